//! Loom models of lifeboat's concurrent protocols; see `tests/`.
