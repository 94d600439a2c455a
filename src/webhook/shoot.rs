//! Garden-side admission of Shoots that enable the extension: the validator denies a broken providerConfig with
//! exact field paths, the defaulter sets what is safe and visible. Both are thin: the rules live in
//! [`crate::domain::validation`], shared with the reconciler and `render`.

use std::sync::Arc;

use kube::Resource;
use kube::core::admission::{AdmissionResponse, Operation};

use crate::apis::core::Shoot;
use crate::domain::validation::{ConfigBodyCache, default_shoot, join_errors, validate_shoot_with};
use crate::runtime::metrics::DenialReason;
use crate::runtime::review::{Answer, Reuse, deny};
use crate::runtime::{AdmissionHandler, RawAdmissionRequest, RawObject};

/// Validates Shoots on CREATE and UPDATE.
#[derive(Debug, Clone, Default)]
pub struct ShootValidator {
    /// The verdicts on configuration bodies seen before, shared by every request (Shoot writes repeat them).
    bodies: Arc<ConfigBodyCache>,
}

/// Defaults the providerConfig of Shoots on CREATE and UPDATE.
#[derive(Debug, Clone, Copy, Default)]
pub struct ShootDefaulter;

/// What the request carries, once it is known to be a Shoot we must judge.
enum Judged {
    /// Not ours to judge (another kind, DELETE/CONNECT): allowed untouched.
    Skip,
    /// The new Shoot and, on UPDATE, the old one.
    Shoot(Box<Shoot>, Option<Box<Shoot>>),
}

fn shoot_of(request: &RawAdmissionRequest) -> Result<Judged, String> {
    if request.kind.group != Shoot::group(&()) || request.kind.kind != Shoot::kind(&()) {
        return Ok(Judged::Skip);
    }
    if !matches!(request.operation, Operation::Create | Operation::Update) {
        return Ok(Judged::Skip);
    }
    let new = request.object.as_ref().ok_or_else(|| "the request carries no Shoot".to_string())?;
    let new = decode(new).map_err(|e| format!("the Shoot cannot be read: {e}"))?;
    let old = match (&request.operation, &request.old_object) {
        // An old object that does not decode is not judged: ratcheting then simply does not apply.
        (Operation::Update, Some(old)) => decode(old).ok(),
        _ => None,
    };
    Ok(Judged::Shoot(Box::new(new), old.map(Box::new)))
}

/// The Shoot in the request, decoded straight from the text the apiserver sent; a problem is reported at its field
/// path in plain words.
fn decode(object: &RawObject) -> Result<Shoot, crate::decode::DecodeError> {
    object.decode()
}

impl AdmissionHandler for ShootValidator {
    // The verdict follows from the review alone (the config-body cache only remembers verdicts).
    async fn admit_reusable(&self, request: RawAdmissionRequest) -> Answer {
        Answer { response: self.admit(request).await, reuse: Reuse::Always }
    }

    async fn admit(&self, request: RawAdmissionRequest) -> AdmissionResponse {
        let response = AdmissionResponse::from(&request);
        match shoot_of(&request) {
            Ok(Judged::Skip) => response,
            Err(reason) => deny(response, DenialReason::BadRequest, reason),
            Ok(Judged::Shoot(new, old)) => {
                let errors = validate_shoot_with(&new, old.as_deref(), Some(&self.bodies));
                if errors.is_empty() {
                    response
                } else {
                    tracing::info!(
                        shoot = %format!("{}/{}", request.namespace.as_deref().unwrap_or_default(), request.name),
                        errors = errors.len(),
                        "denied an invalid cri-resmgr providerConfig"
                    );
                    deny(response, DenialReason::Invalid, join_errors(&errors))
                }
            }
        }
    }
}

impl AdmissionHandler for ShootDefaulter {
    // The defaults follow from the review alone.
    async fn admit_reusable(&self, request: RawAdmissionRequest) -> Answer {
        Answer { response: self.admit(request).await, reuse: Reuse::Always }
    }

    async fn admit(&self, request: RawAdmissionRequest) -> AdmissionResponse {
        let response = AdmissionResponse::from(&request);
        match shoot_of(&request) {
            // The validator, which runs after every mutating webhook, denies what cannot be read.
            Ok(Judged::Skip) | Err(_) => response,
            Ok(Judged::Shoot(shoot, _)) => match default_shoot(&shoot) {
                None => response,
                Some(patch) => match response.clone().with_patch(patch) {
                    Ok(patched) => patched,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot serialise the defaulting patch");
                        deny(response, DenialReason::Internal, format!("internal error while defaulting: {e}"))
                    }
                },
            },
        }
    }
}
