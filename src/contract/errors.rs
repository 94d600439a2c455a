//! Gardener error codes as a property of the error values: every error the driver reports says which codes it
//! carries ([`ErrorCodes`]), so `lastError.codes` never depends on how a message happens to be worded.
//!
//! The one place where text is read is a message written by another component: gardener-resource-manager words
//! "the apiserver rejected this object as invalid" only in its condition message ([`is_configuration_problem`]),
//! and Gardener's own health-check library classifies it the same way.

pub use crate::apis::common::{ErrorCode, ErrorCodes};

impl ErrorCodes for kube::Error {
    /// None: a failed call to the seed's apiserver is the extension's (or the seed's) problem, not the shoot owner's
    /// configuration or infrastructure, and the reconcile is retried anyway. The `ERR_INFRA_*` codes speak of the
    /// shoot's cloud credentials and quotas, which the seed apiserver's 401/403/409 answers say nothing about.
    fn codes(&self) -> Vec<ErrorCode> {
        Vec::new()
    }
}

impl<E: ErrorCodes + ?Sized> ErrorCodes for Box<E> {
    fn codes(&self) -> Vec<ErrorCode> {
        (**self).codes()
    }
}

/// `codes` as the wire strings of `lastError.codes[]` / `conditions[].codes[]`.
pub fn code_strings(codes: &[ErrorCode]) -> Vec<String> {
    codes.iter().map(|code| code.as_str().to_string()).collect()
}

/// The text gardener-resource-manager writes when the apiserver rejected an object of a ManagedResource as invalid.
/// Gardener matches it with `(?i)(error during apply of object .* is invalid:)`
/// (`extensions/pkg/controller/healthcheck/general/managed_resource.go`).
const APPLY_PREFIX: &str = "error during apply of object ";
const INVALID_SUFFIX: &str = " is invalid:";

/// True when `message` (from gardener-resource-manager) says that an object of a ManagedResource was rejected as
/// invalid: on one line, case-insensitively, `error during apply of object `, anything, ` is invalid:` — what
/// Gardener's pattern matches (its `.` does not cross newlines).
pub fn is_configuration_problem(message: &str) -> bool {
    message.lines().any(|line| {
        let line = line.to_lowercase();
        // The first occurrence of the prefix leaves the longest rest, so it finds a match if any occurrence does.
        line.find(APPLY_PREFIX).is_some_and(|start| line[start + APPLY_PREFIX.len()..].contains(INVALID_SUFFIX))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configuration_problem_is_case_insensitive_and_line_bound() {
        assert!(is_configuration_problem("error during apply of object \"v1/ConfigMap/a/b\": x is invalid: y"));
        assert!(is_configuration_problem("ERROR DURING APPLY OF OBJECT foo IS INVALID: bar"));
        assert!(is_configuration_problem("first line\nCould not apply: Error during apply of object a is invalid: b"));
        assert!(is_configuration_problem("error during apply of object  is invalid:"), "`.*` may be empty");
        assert!(!is_configuration_problem("error during apply of object foo: connection refused"));
        assert!(!is_configuration_problem("error during apply of object foo\nbar is invalid: baz"));
        assert!(!is_configuration_problem("error during apply of object is invalid:"));
        assert!(!is_configuration_problem("x is invalid: error during apply of object y"));
    }

    #[test]
    fn kube_errors_carry_no_codes() {
        for code in [401, 403, 404, 409, 422, 500] {
            let status =
                kube::core::Status::failure("forbidden: Unauthorized, is invalid:", "Forbidden").with_code(code);
            assert!(kube::Error::Api(Box::new(status)).codes().is_empty(), "{code}");
        }
    }

    #[test]
    fn codes_are_written_as_gardener_spells_them() {
        assert_eq!(
            code_strings(&[ErrorCode::ConfigurationProblem, ErrorCode::InfraUnauthorized]),
            ["ERR_CONFIGURATION_PROBLEM", "ERR_INFRA_UNAUTHORIZED"]
        );
    }
}
