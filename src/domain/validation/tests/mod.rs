//! Tests of the validation rules, one file per concern; the fixtures they share are here.

use super::*;
use crate::apis::config::{API_VERSION, KIND};
use crate::apis::core::{Shoot, Worker};
use crate::constants::EXTENSION_TYPE;
use serde_json::{Value, json};

mod config_body;
mod extra_options;
mod field;
mod properties;
mod provider_config;
mod shoot;

/// The fallback config of the original README (its `ControllerDeployment` example).
const README_FALLBACK: &str = "### This is default policy from CRI-resource-manage fallback.cfg.sample
policy:
  Active: topology-aware
  ReservedResources:
    CPU: 750m
logger:
  Debug: resource-manager,cache,policy,resource-control
dump:
  Config: off:.*,full:((Create)|(Remove)|(Run)|(Update)|(Start)|(Stop)).*
";

/// cri-resmgr's sample ConfigMap contents (`sample-configs/cri-resmgr-configmap.example.yaml`) as one body.
const SAMPLE_DEFAULT: &str = "policy:
  Active: topology-aware
  ReservedResources:
    cpu: cpuset:0-1
  topology-aware:
    PinCPU: true
logger:
  Debug: resource-manager,cache
";

fn root() -> FieldPath {
    FieldPath::new("spec").child("extensions").index(1).child("providerConfig")
}

/// Decode + validate one providerConfig under [`root`], rendering errors as `path: message` lines.
fn check(raw: Value) -> Vec<String> {
    match decode_and_validate_provider_config(Some(&raw), &root()) {
        Ok(_) => Vec::new(),
        Err(errors) => errors.iter().map(ToString::to_string).collect(),
    }
}

fn configs(key: &str, text: &str) -> Value {
    json!({ "configs": { key: text } })
}

const P: &str = "spec.extensions[1].providerConfig";
