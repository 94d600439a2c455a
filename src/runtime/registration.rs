//! The webhook configurations the extension registers for itself, with the CA bundle injected, following Gardener's
//! conventions (extensions/pkg/webhook/registration.go): configuration named `gardener-extension-<name>`, label
//! `remediation.webhook.shoot.gardener.cloud/exclude`, webhooks named `<webhook>.<name>.extensions.gardener.cloud`,
//! failurePolicy Fail, matchPolicy Exact, sideEffects None, timeout 10 s.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhook, MutatingWebhookConfiguration, RuleWithOperations, ServiceReference, ValidatingWebhook,
    ValidatingWebhookConfiguration, WebhookClientConfig,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use kube::api::{Api, ObjectMeta, Patch, PatchParams};

use crate::constants;

/// Label that keeps Gardener's webhook remediator away from our configurations.
pub const LABEL_REMEDIATION_EXCLUDE: &str = "remediation.webhook.shoot.gardener.cloud/exclude";
/// Field manager for server-side apply of our own webhook configurations.
pub const FIELD_MANAGER: &str = constants::COMPONENT_NAME;
/// The apiserver gives up on a webhook after this many seconds (Gardener's default; the maximum is 30).
pub const TIMEOUT_SECONDS: i32 = 10;

/// Path of the Shoot validating webhook.
pub const PATH_VALIDATE_SHOOT: &str = "/webhooks/cri-resmgr/validate-shoot";
/// Path of the Shoot defaulting (mutating) webhook.
pub const PATH_DEFAULT_SHOOT: &str = "/webhooks/cri-resmgr/default-shoot";
/// Path of the OperatingSystemConfig mutating webhook.
pub const PATH_MUTATE_OSC: &str = "/webhooks/cri-resmgr/mutate-osc";

/// Name of the admission component's webhook configurations in the garden.
pub const ADMISSION_CONFIG_NAME: &str = "gardener-extension-cri-resmgr-admission";
/// Name of the controller's OSC webhook configuration in the seed.
pub const CONTROLLER_CONFIG_NAME: &str = constants::COMPONENT_NAME;

/// How the apiserver reaches the webhook server (Gardener's `--webhook-config-mode`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientConfigMode {
    /// Through a Service of the cluster the configuration is registered in.
    Service { namespace: String, name: String, port: i32 },
    /// Through a URL; `base` is `https://host[:port]` without a path.
    Url { base: String },
}

impl ClientConfigMode {
    fn client_config(&self, path: &str, ca_bundle: &[u8]) -> WebhookClientConfig {
        let ca_bundle = Some(ByteString(ca_bundle.to_vec()));
        match self {
            ClientConfigMode::Service { namespace, name, port } => WebhookClientConfig {
                service: Some(ServiceReference {
                    namespace: namespace.clone(),
                    name: name.clone(),
                    path: Some(path.to_string()),
                    port: Some(*port),
                }),
                ca_bundle,
                url: None,
            },
            ClientConfigMode::Url { base } => WebhookClientConfig {
                url: Some(format!("{}{path}", base.trim_end_matches('/'))),
                ca_bundle,
                service: None,
            },
        }
    }
}

fn rule(group: &str, version: &str, resource: &str) -> RuleWithOperations {
    RuleWithOperations {
        api_groups: Some(vec![group.to_string()]),
        api_versions: Some(vec![version.to_string()]),
        operations: Some(vec!["CREATE".to_string(), "UPDATE".to_string()]),
        resources: Some(vec![resource.to_string()]),
        scope: None,
    }
}

fn label_true(key: &str) -> LabelSelector {
    LabelSelector {
        match_expressions: Some(vec![LabelSelectorRequirement {
            key: key.to_string(),
            operator: "In".to_string(),
            values: Some(vec!["true".to_string()]),
        }]),
        match_labels: None,
    }
}

fn metadata(name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_string()),
        labels: Some(BTreeMap::from([(LABEL_REMEDIATION_EXCLUDE.to_string(), "true".to_string())])),
        ..ObjectMeta::default()
    }
}

fn webhook_name(webhook: &str, component: &str) -> String {
    format!("{webhook}.{component}.extensions.gardener.cloud")
}

fn rule_for<K: kube::Resource<DynamicType = ()>>() -> RuleWithOperations {
    rule(&K::group(&()), &K::version(&()), &K::plural(&()))
}

fn shoot_rule() -> RuleWithOperations {
    rule_for::<crate::apis::core::Shoot>()
}

/// The garden's ValidatingWebhookConfiguration for Shoots that enable the extension.
pub fn shoot_validating_configuration(mode: &ClientConfigMode, ca_bundle: &[u8]) -> ValidatingWebhookConfiguration {
    ValidatingWebhookConfiguration {
        metadata: metadata(ADMISSION_CONFIG_NAME),
        webhooks: Some(vec![ValidatingWebhook {
            name: webhook_name("validator", "cri-resmgr-admission"),
            admission_review_versions: vec!["v1".to_string()],
            client_config: mode.client_config(PATH_VALIDATE_SHOOT, ca_bundle),
            failure_policy: Some("Fail".to_string()),
            match_policy: Some("Exact".to_string()),
            object_selector: Some(label_true(constants::SHOOT_EXTENSION_LABEL)),
            rules: Some(vec![shoot_rule()]),
            side_effects: "None".to_string(),
            timeout_seconds: Some(TIMEOUT_SECONDS),
            ..ValidatingWebhook::default()
        }]),
    }
}

/// The garden's MutatingWebhookConfiguration that defaults the providerConfig of Shoots enabling the extension.
pub fn shoot_mutating_configuration(mode: &ClientConfigMode, ca_bundle: &[u8]) -> MutatingWebhookConfiguration {
    MutatingWebhookConfiguration {
        metadata: metadata(ADMISSION_CONFIG_NAME),
        webhooks: Some(vec![MutatingWebhook {
            name: webhook_name("defaulter", "cri-resmgr-admission"),
            admission_review_versions: vec!["v1".to_string()],
            client_config: mode.client_config(PATH_DEFAULT_SHOOT, ca_bundle),
            failure_policy: Some("Fail".to_string()),
            match_policy: Some("Exact".to_string()),
            object_selector: Some(label_true(constants::SHOOT_EXTENSION_LABEL)),
            // Defaulting only touches our own providerConfig; other webhooks' changes need no second pass.
            reinvocation_policy: Some("Never".to_string()),
            rules: Some(vec![shoot_rule()]),
            side_effects: "None".to_string(),
            timeout_seconds: Some(TIMEOUT_SECONDS),
            ..MutatingWebhook::default()
        }]),
    }
}

/// The seed's MutatingWebhookConfiguration for the OperatingSystemConfigs of shoots that enable the extension.
pub fn osc_mutating_configuration(mode: &ClientConfigMode, ca_bundle: &[u8]) -> MutatingWebhookConfiguration {
    MutatingWebhookConfiguration {
        metadata: metadata(CONTROLLER_CONFIG_NAME),
        webhooks: Some(vec![MutatingWebhook {
            name: webhook_name("osc", constants::EXTENSION_NAME),
            admission_review_versions: vec!["v1".to_string()],
            client_config: mode.client_config(PATH_MUTATE_OSC, ca_bundle),
            failure_policy: Some("Fail".to_string()),
            match_policy: Some("Exact".to_string()),
            namespace_selector: Some(label_true(constants::NAMESPACE_EXTENSION_LABEL)),
            // Other extensions (e.g. registry-cache) mutate the same OSC; run again if they change it after us.
            reinvocation_policy: Some("IfNeeded".to_string()),
            rules: Some(vec![rule_for::<crate::apis::extensions::OperatingSystemConfig>()]),
            side_effects: "None".to_string(),
            timeout_seconds: Some(TIMEOUT_SECONDS),
            ..MutatingWebhook::default()
        }]),
    }
}

/// Registers (creates or updates by server-side apply) a validating webhook configuration.
pub async fn apply_validating(
    client: &kube::Client,
    configuration: &ValidatingWebhookConfiguration,
) -> Result<(), kube::Error> {
    let api: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    let name = configuration.metadata.name.as_deref().unwrap_or_default();
    api.patch(name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(configuration)).await?;
    Ok(())
}

/// Registers (creates or updates by server-side apply) a mutating webhook configuration.
pub async fn apply_mutating(
    client: &kube::Client,
    configuration: &MutatingWebhookConfiguration,
) -> Result<(), kube::Error> {
    let api: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    let name = configuration.metadata.name.as_deref().unwrap_or_default();
    api.patch(name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(configuration)).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shoot_validator_matches_only_labelled_shoots_and_fails_closed() {
        let mode = ClientConfigMode::Url { base: "https://127.0.0.1:9443/".to_string() };
        let config = shoot_validating_configuration(&mode, b"CA");
        let webhook = &config.webhooks.as_ref().expect("webhooks")[0];
        assert_eq!(webhook.name, "validator.cri-resmgr-admission.extensions.gardener.cloud");
        assert_eq!(webhook.failure_policy.as_deref(), Some("Fail"));
        assert_eq!(webhook.side_effects, "None");
        assert!(webhook.timeout_seconds.is_some_and(|t| t <= 10));
        assert_eq!(
            webhook.client_config.url.as_deref(),
            Some("https://127.0.0.1:9443/webhooks/cri-resmgr/validate-shoot")
        );
        assert_eq!(webhook.client_config.ca_bundle.as_ref().map(|b| b.0.as_slice()), Some(&b"CA"[..]));
        let selector = webhook.object_selector.as_ref().expect("object selector");
        let requirement = &selector.match_expressions.as_ref().expect("expressions")[0];
        assert_eq!(requirement.key, "extensions.extensions.gardener.cloud/cri-resmgr-extension");
        assert_eq!(requirement.values.as_deref(), Some(&["true".to_string()][..]));
        let rule = &webhook.rules.as_ref().expect("rules")[0];
        assert_eq!(rule.api_groups.as_deref(), Some(&["core.gardener.cloud".to_string()][..]));
        assert_eq!(rule.resources.as_deref(), Some(&["shoots".to_string()][..]));
        assert_eq!(rule.operations.as_deref(), Some(&["CREATE".to_string(), "UPDATE".to_string()][..]));
        assert_eq!(
            config.metadata.labels.as_ref().and_then(|l| l.get(LABEL_REMEDIATION_EXCLUDE)).map(String::as_str),
            Some("true")
        );
    }

    #[test]
    fn service_mode_points_at_the_service_with_the_path() {
        let mode = ClientConfigMode::Service {
            namespace: "garden".to_string(),
            name: "gardener-extension-cri-resmgr-admission".to_string(),
            port: 443,
        };
        let config = shoot_mutating_configuration(&mode, b"CA");
        let webhook = &config.webhooks.as_ref().expect("webhooks")[0];
        let service = webhook.client_config.service.as_ref().expect("service");
        assert_eq!(service.namespace, "garden");
        assert_eq!(service.path.as_deref(), Some(PATH_DEFAULT_SHOOT));
        assert_eq!(service.port, Some(443));
        assert!(webhook.client_config.url.is_none());
    }

    #[test]
    fn osc_webhook_selects_labelled_shoot_namespaces() {
        let mode = ClientConfigMode::Url { base: "https://127.0.0.1:1".to_string() };
        let config = osc_mutating_configuration(&mode, b"CA");
        let webhook = &config.webhooks.as_ref().expect("webhooks")[0];
        let selector = webhook.namespace_selector.as_ref().expect("namespace selector");
        assert_eq!(
            selector.match_expressions.as_ref().expect("expressions")[0].key,
            "extensions.gardener.cloud/cri-resmgr-extension"
        );
        assert!(webhook.object_selector.is_none());
        let rule = &webhook.rules.as_ref().expect("rules")[0];
        assert_eq!(rule.resources.as_deref(), Some(&["operatingsystemconfigs".to_string()][..]));
    }
}
