//! The math of training, forward with a tape and backward by hand: the One2Set model of
//! [`crate::model::one2set`] with its backward pass, written once over a float type [`Real`] (f32
//! to train, f64 for finite-difference gradient checks), Adam and gradient clipping. The loop that
//! drives it is [`crate::train_generator`]; the selector's LoRA training
//! ([`crate::select::train`]) reuses [`Real`], the matrix product and Adam's state files. The layers, dropout sites and initialisation follow the
//! authors' released code (jiacheng-ye/kg_one2set: `pykp/model.py`, `pykp/encoder/transformer.py`,
//! `pykp/decoder/transformer.py`, `pykp/modules/multi_head_attn.py`, `pykp/utils/masked_loss.py`);
//! `tools/one2set_train_reference.py` is the PyTorch peer the gradients are held to.
//!
//! Plain loops and GEMM, all buffers in a [`model::TrainWorkspace`] reused across steps. Time a
//! step, phase by phase, with `kpg bench train`.

pub mod adam;
mod backward;
pub mod batch;
mod blocks;
pub mod dists;
pub mod model;
pub mod ops;
pub mod params;
pub mod real;

pub use adam::{clip_grad_norm, Adam};
pub use backward::loss_backward;
pub use batch::TrainBatch;
pub use dists::Dists;
pub(crate) use model::forward_dists_reusing_encoder;
pub use model::{forward_dists, TrainWorkspace};
pub use ops::dropout::Dropout;
pub use params::{Params, Tensor};
pub use real::Real;
