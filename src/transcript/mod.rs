//! The transcript: events, the append-only writer, masking, verification and reports.

pub mod event;
pub mod mask;
pub mod render;
pub mod verify;
pub mod writer;

pub use event::{Event, Record};
pub use mask::Masker;
pub use writer::TranscriptWriter;
