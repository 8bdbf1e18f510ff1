//! The node image store (skeleton; being written).
