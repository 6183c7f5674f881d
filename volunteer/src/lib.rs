//! volunteer
