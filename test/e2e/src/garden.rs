//! Where the scenarios run and how their Shoots are named. Locally that is the garden control plane of the
//! [`crate::topology::Topology`]; with `E2E_GARDEN_KUBECONFIG` it is a real Gardener's garden (e.g. a local Gardener
//! on kind): the scenarios then skip the stand-ins, create their Shoots in a real project namespace and observe the
//! seed through Gardener's own components ([`crate::landscape`]). These settings are parsed and checked here.

/// Environment variable with the kubeconfig of a real garden; unset: the local topology.
pub const ENV_GARDEN_KUBECONFIG: &str = "E2E_GARDEN_KUBECONFIG";
/// Environment variable with the project namespace in a real garden (default [`DEFAULT_PROJECT_NAMESPACE`]).
pub const ENV_PROJECT_NAMESPACE: &str = "E2E_PROJECT_NAMESPACE";
/// The project a local Gardener (gardener/gardener's `make kind-up gardener-up`) creates.
pub const DEFAULT_PROJECT_NAMESPACE: &str = "garden-local";
/// Environment variable with the seed kubeconfig of a real landscape, for observations in the seed.
pub const ENV_SEED_KUBECONFIG: &str = "E2E_SEED_KUBECONFIG";
/// Gardener limits a Shoot's name together with its project's: their lengths may add up to this at most (the
/// seed namespace `shoot--<project>--<name>` and the names derived from it must stay valid).
pub const MAX_PROJECT_AND_SHOOT_NAME: usize = 21;

/// Where the scenarios run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The local topology with its stand-ins.
    Local,
    /// A real Gardener: its garden (and seed) kubeconfigs and the project namespace.
    Gardener { garden_kubeconfig: String, seed_kubeconfig: Option<String>, project_namespace: String },
}

/// Errors in the settings of a real Gardener.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TargetError {
    #[error("${ENV_PROJECT_NAMESPACE}={0:?} is not a project namespace (garden-<project>)")]
    NotAProject(String),
    #[error("${ENV_GARDEN_KUBECONFIG} is set but empty")]
    EmptyKubeconfig,
}

impl Target {
    /// The target from the environment variables `lookup` gives.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Target, TargetError> {
        let Some(garden_kubeconfig) = lookup(ENV_GARDEN_KUBECONFIG) else { return Ok(Target::Local) };
        if garden_kubeconfig.trim().is_empty() {
            return Err(TargetError::EmptyKubeconfig);
        }
        let project_namespace = lookup(ENV_PROJECT_NAMESPACE).unwrap_or_else(|| DEFAULT_PROJECT_NAMESPACE.to_string());
        if !project_namespace.starts_with("garden-") || project_namespace.len() <= "garden-".len() {
            return Err(TargetError::NotAProject(project_namespace));
        }
        Ok(Target::Gardener { garden_kubeconfig, seed_kubeconfig: lookup(ENV_SEED_KUBECONFIG), project_namespace })
    }

    /// The target from this process's environment.
    pub fn from_env() -> Result<Target, TargetError> {
        Target::from_lookup(|name| std::env::var(name).ok())
    }
}

/// A Shoot name for `scenario` in the project namespace `project_namespace` (`garden-<project>`) that Gardener
/// accepts and that is unique per run: the scenario's initials and a suffix, shortened for a long project name
/// (the suffix is kept longest, as it tells runs apart).
pub fn shoot_name(scenario: &str, project_namespace: &str, suffix: u32) -> String {
    let project = project_namespace.strip_prefix("garden-").unwrap_or(project_namespace);
    let budget = MAX_PROJECT_AND_SHOOT_NAME.saturating_sub(project.len()).max(1);
    let initials: String = scenario.split(['-', '_']).filter_map(|word| word.chars().next()).collect();
    let candidates = [format!("e2e-{initials}-{suffix:x}"), format!("{initials}-{suffix:x}"), format!("e{suffix:x}")];
    match candidates.iter().find(|name| name.len() <= budget) {
        Some(name) => name.clone(),
        None => candidates[2].chars().take(budget).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string())
    }

    #[test]
    fn without_a_garden_kubeconfig_the_scenarios_run_locally() {
        assert_eq!(Target::from_lookup(env(&[])), Ok(Target::Local));
    }

    #[test]
    fn a_real_garden_uses_the_local_gardeners_project_unless_told() {
        let target = Target::from_lookup(env(&[(ENV_GARDEN_KUBECONFIG, "/k/garden")])).expect("target");
        assert_eq!(
            target,
            Target::Gardener {
                garden_kubeconfig: "/k/garden".to_string(),
                seed_kubeconfig: None,
                project_namespace: DEFAULT_PROJECT_NAMESPACE.to_string()
            }
        );
        let other = Target::from_lookup(env(&[(ENV_GARDEN_KUBECONFIG, "/k"), (ENV_PROJECT_NAMESPACE, "garden-dev")]));
        assert!(matches!(other, Ok(Target::Gardener { project_namespace, .. }) if project_namespace == "garden-dev"));
    }

    #[test]
    fn bad_settings_are_refused() {
        assert_eq!(Target::from_lookup(env(&[(ENV_GARDEN_KUBECONFIG, " ")])), Err(TargetError::EmptyKubeconfig));
        let not_project =
            Target::from_lookup(env(&[(ENV_GARDEN_KUBECONFIG, "/k"), (ENV_PROJECT_NAMESPACE, "default")]));
        assert_eq!(not_project, Err(TargetError::NotAProject("default".to_string())));
    }

    #[test]
    fn shoot_names_are_short_and_distinct() {
        let name = shoot_name("enable-disable-reenable-delete", DEFAULT_PROJECT_NAMESPACE, 0xabcdef);
        assert_eq!(name, "e2e-edrd-abcdef");
        for project in ["garden-local", "garden-dev", "garden-a-longer-one", "garden-fourteen-chars"] {
            let budget = MAX_PROJECT_AND_SHOOT_NAME - (project.len() - "garden-".len()).min(20);
            let name = shoot_name("enable-disable-reenable-delete", project, u32::MAX);
            assert!(name.len() <= budget && !name.is_empty() && !name.ends_with('-'), "{project}: {name:?}");
            assert_ne!(shoot_name("a-b", project, 1), shoot_name("a-b", project, 2), "{project}");
        }
        assert_eq!(shoot_name("a-b", "garden-a-longer-one", 0xabcdef), "ab-abcdef", "initials dropped last");
        assert_eq!(shoot_name("a-b", "garden-a-much-longer", 0xabcdef), "eabcdef", "the suffix kept longest");
    }
}

#[cfg(test)]
mod image_workflow {
    //! The image workflow of a real-Gardener run: `make build-images` / `make push-images` with REGISTRY and TAG.
    //! No container engine runs here, so `make -n` shows what they would run.

    fn make_dry_run(target: &str) -> String {
        let output = std::process::Command::new("make")
            .arg("-n")
            .arg("-C")
            .arg(cri_resmgr_testbed::repo_root())
            .args([target, "REGISTRY=registry.example.com/team", "TAG=v1.2.3", "CONTAINER_ENGINE=podman"])
            .output()
            .expect("run make -n");
        assert!(output.status.success(), "make -n {target}: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    #[test]
    fn build_images_builds_both_images_with_registry_and_tag() {
        let commands = make_dry_run("build-images");
        assert!(commands.contains(
            "podman build --target gardener-extension-cri-resmgr -t registry.example.com/team/gardener-extension-cri-resmgr:v1.2.3 ."
        ), "{commands}");
        assert!(commands.contains(
            "podman build --target installation -t registry.example.com/team/gardener-extension-cri-resmgr-installation:v1.2.3 ."
        ), "{commands}");
    }

    #[test]
    fn push_images_pushes_both_images() {
        let commands = make_dry_run("push-images");
        assert!(
            commands.contains("podman push registry.example.com/team/gardener-extension-cri-resmgr:v1.2.3"),
            "{commands}"
        );
        assert!(
            commands
                .contains("podman push registry.example.com/team/gardener-extension-cri-resmgr-installation:v1.2.3"),
            "{commands}"
        );
    }
}
