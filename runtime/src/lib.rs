//! Containers through runc (skeleton; being written).
