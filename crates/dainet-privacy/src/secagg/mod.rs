//! SecAgg+ (being written).
