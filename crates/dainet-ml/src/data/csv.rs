//! IDX files (placeholder; being written).
