//! ingester
