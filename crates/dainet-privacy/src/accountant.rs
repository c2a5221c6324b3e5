//! The RDP accountant (being written).
