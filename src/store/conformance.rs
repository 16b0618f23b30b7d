//! Placeholder; being written on the `store` branch.
