//! The webhook endpoint (being written).
