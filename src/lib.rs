//! typed-vfio
pub mod sys;
