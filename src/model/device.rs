//! Choosing the device tensors live on: CPU by default, CUDA when built with `--features cuda`.

use std::fmt;
use std::str::FromStr;

use candle_core::Device;

use crate::model::error::{ModelError, Result};

/// A device a user can ask for on the command line (`--device cpu|cuda`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceKind {
    #[default]
    Cpu,
    /// The first CUDA GPU.
    Cuda,
}

impl FromStr for DeviceKind {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s {
            "cpu" => Ok(Self::Cpu),
            "cuda" | "gpu" => Ok(Self::Cuda),
            other => Err(format!(
                "unknown device `{other}`: expected `cpu` or `cuda`"
            )),
        }
    }
}

impl fmt::Display for DeviceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Cpu => "cpu",
            Self::Cuda => "cuda",
        })
    }
}

impl DeviceKind {
    /// Opens the device. Without the `cuda` feature candle's CUDA constructor fails at run time,
    /// so one code path serves both builds and the message says how to get CUDA.
    pub fn open(self) -> Result<Device> {
        match self {
            Self::Cpu => Ok(Device::Cpu),
            Self::Cuda => Device::new_cuda(0).map_err(|e| ModelError::Device {
                requested: self.to_string(),
                reason: e.to_string(),
                help: if cfg!(feature = "cuda") {
                    "check that a CUDA GPU and its driver are visible (nvidia-smi)".into()
                } else {
                    "this binary was built without CUDA: rebuild with `cargo build --features cuda`, or use --device cpu".into()
                },
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_and_opens_cpu() {
        assert_eq!("cpu".parse::<DeviceKind>(), Ok(DeviceKind::Cpu));
        assert_eq!("cuda".parse::<DeviceKind>(), Ok(DeviceKind::Cuda));
        assert!("tpu"
            .parse::<DeviceKind>()
            .unwrap_err()
            .contains("expected"));
        assert!(DeviceKind::Cpu.open().unwrap().is_cpu());
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn cuda_without_the_feature_explains_how_to_get_it() {
        let err = DeviceKind::Cuda.open().unwrap_err();
        match err {
            ModelError::Device { help, .. } => assert!(help.contains("--features cuda"), "{help}"),
            other => panic!("unexpected error {other}"),
        }
    }
}
