//! A PYME-compatible data server (being written).
