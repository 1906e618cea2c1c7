//! Python bindings for `fluidsched-core`: the `fluidsched._core` extension module.
//!
//! This crate only converts values and errors; all behaviour lives in the core crate. Public Python names come
//! from `python/fluidsched/__init__.py`; `python/fluidsched/_core.pyi` documents this module's types.

use pyo3::prelude::*;

mod admission;
mod errors;
mod fluid;
mod options;
mod scheduler;
mod sim;
mod step;
mod time_model;
mod trace_args;

/// The extension module.
#[pymodule]
#[pyo3(name = "_core")]
mod core_module {
    #[pymodule_export]
    use crate::admission::PyAdmissionController;
    #[pymodule_export]
    use crate::fluid::{PyFluidModel, py_plan};
    #[pymodule_export]
    use crate::scheduler::PyScheduler;
    #[pymodule_export]
    use crate::sim::{PySimulation, PyWorkload};
    #[pymodule_export]
    use crate::step::{PyStep, PyStepOutcome};
    #[pymodule_export]
    use crate::time_model::py_preset_info;

    use pyo3::prelude::*;

    #[pymodule_init]
    fn init(m: &Bound<'_, PyModule>) -> PyResult<()> {
        m.add("__version__", env!("CARGO_PKG_VERSION"))?;
        m.add("MAX_NUM_BLOCKS", fluidsched_core::block_pool::MAX_NUM_BLOCKS)?;
        let presets: Vec<&str> = fluidsched_core::time_model::preset::SHIPPED.iter().map(|(n, _)| *n).collect();
        m.add("PRESET_NAMES", presets)?;
        m.add("POLICY_NAMES", fluidsched_core::policies::POLICY_NAMES.to_vec())?;
        let options = pyo3::types::PyDict::new(m.py());
        for &name in fluidsched_core::policies::POLICY_NAMES {
            options
                .set_item(name, fluidsched_core::policies::policy_option_names(name).unwrap_or_default().to_vec())?;
        }
        m.add("POLICY_OPTIONS", options)?;
        Ok(())
    }
}
