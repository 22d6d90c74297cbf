//! Keyphrase evaluation by the protocol of the One2Set papers (in progress).

pub mod porter;
