//! Writing to stdout and stderr without ever panicking.
//!
//! `println!` panics when the write fails: `pushguard history | head -1`
//! (a pipe whose reader left) or a warning sent to `2>/dev/full` would turn
//! into exit code 101 instead of the wrapped command's own. These macros
//! write the same text and drop a failed write: the line is lost, never the
//! run or its exit code.

/// Like `println!`, but a failed write to stdout is ignored.
#[macro_export]
macro_rules! outln {
    ($($arg:tt)*) => {{
        use ::std::io::Write as _;
        let _ = ::std::writeln!(::std::io::stdout().lock(), $($arg)*);
    }};
}

/// Like `print!`, but a failed write to stdout is ignored.
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => {{
        use ::std::io::Write as _;
        let _ = ::std::write!(::std::io::stdout().lock(), $($arg)*);
    }};
}

/// Like `eprintln!`, but a failed write to stderr is ignored.
#[macro_export]
macro_rules! errln {
    ($($arg:tt)*) => {{
        use ::std::io::Write as _;
        let _ = ::std::writeln!(::std::io::stderr().lock(), $($arg)*);
    }};
}

#[cfg(test)]
mod tests {
    #[test]
    fn formats_like_println() {
        // Compiles with and without arguments; writes do not panic.
        crate::outln!();
        crate::outln!("{} {x}", 1, x = 2);
        crate::out!("");
        crate::errln!("{:?}", "e");
    }
}
