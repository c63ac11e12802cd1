//! The state file under faults: nothing lost, totals right.
