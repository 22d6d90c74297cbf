//! The CUDA device: one context, one stream, one cuBLAS handle, and every kernel module that
//! build.rs compiled from `kernels/*.cu`, loaded once. Everything kpg does on the GPU goes through
//! one `CudaDevice`, so work is ordered on its stream and a host read synchronises it.
//!
//! Every driver and cuBLAS error becomes [`KpgError::Cuda`] naming what was being done.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use cudarc::cublas::CudaBlas;
use cudarc::driver::{
    CudaContext, CudaFunction, CudaModule, CudaSlice, CudaStream, DeviceRepr, ValidAsZeroBits,
};

use crate::error::{KpgError, Result};

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/kernels.rs"));
}

/// Turns a cudarc error into a [`KpgError::Cuda`] that says what kpg was doing.
pub trait CudaResultExt<T> {
    fn during(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T, E: std::fmt::Debug> CudaResultExt<T> for std::result::Result<T, E> {
    fn during(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| KpgError::Cuda {
            during: what(),
            reason: format!("{e:?}"),
        })
    }
}

pub struct CudaDevice {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    blas: CudaBlas,
    modules: HashMap<&'static str, Arc<CudaModule>>,
    functions: Mutex<HashMap<&'static str, CudaFunction>>,
}

impl CudaDevice {
    /// The CUDA libraries kpg loads at run time that cannot be found, by file name; cudarc panics
    /// on the first call into a library it cannot load, so they are looked for first.
    pub fn missing_libraries() -> Vec<&'static str> {
        // SAFETY: each only tries to dlopen its library; no CUDA call is made.
        let present = unsafe {
            [
                (
                    "libcuda.so (the NVIDIA driver)",
                    cudarc::driver::sys::is_culib_present(),
                ),
                (
                    "libcublas.so (cuBLAS)",
                    cudarc::cublas::sys::is_culib_present(),
                ),
            ]
        };
        present
            .into_iter()
            .filter(|(_, here)| !here)
            .map(|(name, _)| name)
            .collect()
    }

    /// Opens GPU `ordinal` and loads every embedded kernel module.
    pub fn new(ordinal: usize) -> Result<Arc<Self>> {
        let missing = Self::missing_libraries();
        if !missing.is_empty() {
            return Err(KpgError::CudaUnavailable(format!(
                "{} not found: install the NVIDIA driver and the CUDA 13 runtime libraries \
                 (cuBLAS), or put them on LD_LIBRARY_PATH",
                missing.join(", ")
            )));
        }
        let count = CudaContext::device_count().during(|| "counting CUDA devices".into())?;
        if ordinal as i32 >= count {
            return Err(KpgError::CudaUnavailable(format!(
                "GPU {ordinal} asked for, {count} present"
            )));
        }
        let ctx = CudaContext::new(ordinal).during(|| format!("opening GPU {ordinal}"))?;
        // One stream orders all of kpg's work, so cudarc's cross-stream event tracking would only
        // add an event record per buffer use.
        // SAFETY: called before any buffer exists; every launch and copy uses `stream` below.
        unsafe { ctx.disable_event_tracking() };
        let stream = ctx
            .new_stream()
            .during(|| "creating the CUDA stream".into())?;
        let blas = CudaBlas::new(stream.clone()).during(|| "creating the cuBLAS handle".into())?;
        let mut modules = HashMap::new();
        for &(name, image) in embedded::KERNELS {
            let module = ctx
                .load_module(cudarc::nvrtc::Ptx::from_binary(image.to_vec()))
                .during(|| format!("loading kernel module `{name}` (kernels/{name}.cu)"))?;
            modules.insert(name, module);
        }
        Ok(Arc::new(CudaDevice {
            ctx,
            stream,
            blas,
            modules,
            functions: Mutex::new(HashMap::new()),
        }))
    }

    /// The GPU ordinal this device was opened on (`--gpu`).
    pub fn ordinal(&self) -> usize {
        self.context().ordinal()
    }

    pub fn context(&self) -> &Arc<CudaContext> {
        &self.ctx
    }

    /// Milliseconds the work that `f` queues takes on the device stream, timed with CUDA events.
    pub fn time_ms(&self, f: impl FnOnce() -> Result<()>) -> Result<f32> {
        let during = || "timing with CUDA events".to_string();
        // `None` would create events with timing disabled.
        let timing = Some(cudarc::driver::sys::CUevent_flags::CU_EVENT_DEFAULT);
        let start = self.ctx.new_event(timing).during(during)?;
        let end = self.ctx.new_event(timing).during(during)?;
        start.record(&self.stream).during(during)?;
        f()?;
        end.record(&self.stream).during(during)?;
        end.synchronize().during(during)?;
        start.elapsed_ms(&end).during(during)
    }

    pub fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }

    pub fn blas(&self) -> &CudaBlas {
        &self.blas
    }

    /// "NVIDIA H200, sm_90, 139.8 GiB".
    pub fn describe(&self) -> Result<String> {
        let name = self.ctx.name().during(|| "reading the GPU name".into())?;
        let (major, minor) = self
            .ctx
            .compute_capability()
            .during(|| "reading the compute capability".into())?;
        let total = self
            .ctx
            .total_mem()
            .during(|| "reading the GPU memory size".into())?;
        Ok(format!(
            "{name}, sm_{major}{minor}, {:.1} GiB",
            total as f64 / (1u64 << 30) as f64
        ))
    }

    /// (free, total) device memory in bytes.
    pub fn memory(&self) -> Result<(usize, usize)> {
        self.ctx
            .mem_get_info()
            .during(|| "reading free GPU memory".into())
    }

    /// Kernel `name` (an `extern "C"` entry point) from module `module` (`kernels/<module>.cu`),
    /// looked up once and cached.
    pub fn function(&self, module: &'static str, name: &'static str) -> Result<CudaFunction> {
        let mut cache = self.functions.lock().expect("function cache poisoned");
        if let Some(f) = cache.get(name) {
            return Ok(f.clone());
        }
        let m = self.modules.get(module).ok_or_else(|| KpgError::Cuda {
            during: format!("looking up kernel `{name}`"),
            reason: format!("no module kernels/{module}.cu was compiled into this binary"),
        })?;
        let f = m
            .load_function(name)
            .during(|| format!("looking up kernel `{name}` in kernels/{module}.cu"))?;
        cache.insert(name, f.clone());
        Ok(f)
    }

    /// A zeroed device buffer of `n` elements; `what` names it in errors.
    pub fn alloc<T: DeviceRepr + ValidAsZeroBits>(
        &self,
        n: usize,
        what: &str,
    ) -> Result<CudaSlice<T>> {
        self.stream
            .alloc_zeros::<T>(n.max(1))
            .during(|| format!("allocating {what} ({n} elements)"))
    }

    /// Copies a host slice into a new device buffer.
    pub fn upload<T: DeviceRepr>(&self, host: &[T], what: &str) -> Result<CudaSlice<T>> {
        self.stream
            .clone_htod(host)
            .during(|| format!("uploading {what} ({} elements)", host.len()))
    }

    /// Copies a host slice into the front of an existing device buffer.
    pub fn upload_into<T: DeviceRepr>(
        &self,
        host: &[T],
        dst: &mut CudaSlice<T>,
        what: &str,
    ) -> Result<()> {
        if host.is_empty() {
            return Ok(());
        }
        let mut view = dst.slice_mut(..host.len());
        self.stream
            .memcpy_htod(host, &mut view)
            .during(|| format!("copying {what} to the GPU ({} elements)", host.len()))
    }

    /// Copies the first `out.len()` elements of a device buffer to the host (synchronising).
    pub fn download_into<T: DeviceRepr>(
        &self,
        src: &CudaSlice<T>,
        out: &mut [T],
        what: &str,
    ) -> Result<()> {
        if out.is_empty() {
            return Ok(());
        }
        let view = src.slice(..out.len());
        self.stream
            .memcpy_dtoh(&view, out)
            .during(|| format!("copying {what} from the GPU ({} elements)", out.len()))?;
        self.synchronize(what)
    }

    /// Copies a whole device buffer to a new host vector (synchronising).
    pub fn download<T: DeviceRepr + Default + Clone>(
        &self,
        src: &CudaSlice<T>,
        what: &str,
    ) -> Result<Vec<T>> {
        let mut out = vec![T::default(); src.len()];
        self.download_into(src, &mut out, what)?;
        Ok(out)
    }

    /// Waits for all queued work; a failure is reported against `what` (the last thing waited
    /// for), since launches report errors only asynchronously.
    pub fn synchronize(&self, what: &str) -> Result<()> {
        self.stream
            .synchronize()
            .during(|| format!("waiting for {what}"))
    }
}
