//! The calendar built-in: .ics files and a real CalDAV server.
