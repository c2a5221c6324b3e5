//! Partitions (placeholder; being written).
/// placeholder
pub struct Partition;
/// placeholder
pub struct PartitionError;
/// placeholder
pub struct PartitionScheme;
