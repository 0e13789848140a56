//! `clouds.yaml` loading with the OpenStack rules (as gophertelekomcloud's loader implements them):
//!
//! - **Search order** (first existing file wins, files are not merged): `$OS_CLIENT_CONFIG_FILE`, then
//!   `clouds.{yaml,yml,json}` in `./`, `~/.config/openstack/`, `/etc/openstack/`.
//! - **secure.yaml**: `$OS_CLIENT_SECURE_FILE`, else `secure.{yaml,yml,json}` in the same directories, merged
//!   per cloud name; clouds.yaml values win, secure.yaml fills the gaps (typically passwords).
//! - **Vendor profile**: `profile:` (or `cloud:`) names an entry of `clouds-public.yaml` (`public-clouds:`,
//!   `$OS_CLIENT_VENDOR_FILE`) or the built-in `otc` profile; it fills gaps too.
//! - **`OS_*` fallbacks**: a cloud built from `OS_AUTH_URL`, `OS_USERNAME`, `OS_PASSWORD`, `OS_PROJECT_NAME`,
//!   `OS_ACCESS_KEY`, `OS_REGION_NAME`, ... fills whatever the file left empty (the file wins).
//! - **Selection**: `OS_CLOUD`; without it the only cloud of the file; without a file, the `OS_*` cloud.
//! - **Region**: `region_name`, else the part of `project_name` before the first `_` (`eu-de_myproj`);
//!   `{region_name}` in `auth_url` is substituted.
//! - **Credentials**: token > AK/SK > password, unless `auth_type` says which.
//!
//! The loader takes its environment as a [`CloudsEnv`] (variables and directories), so tests never touch the
//! process environment.
//!
//! Laid out by step: [`files`] (where clouds.yaml, secure.yaml and clouds-public.yaml are searched and how a
//! section is read), [`env`] (the cloud `OS_*` variables describe), [`merge`] (gap filling), [`cloud`] (the
//! typed [`Cloud`] built and checked from the merged document); this file ties them together in [`load`].

mod cloud;
mod env;
mod files;
mod merge;

pub use cloud::{Cloud, Credentials, DomainRef, UserRef, mask_ak};
pub use env::ENV_CLOUD;
pub use files::CloudsEnv;

use cloud::build;
use env::env_cloud;
use files::display_paths;
use files::{read_section, vendor_profile};
use merge::{fill_gaps, str_at};
use serde_json::{Map, Value};
use shared::config::ConfigError;
use std::path::PathBuf;
use thiserror::Error;

/// Why no usable cloud could be loaded. Messages name the file, cloud and key, never a value.
#[derive(Debug, Error)]
pub enum CloudsError {
    /// No clouds.yaml anywhere and no `OS_AUTH_URL` to build a cloud from.
    #[error("no clouds.yaml found (searched {}) and OS_AUTH_URL is not set", display_paths(.searched))]
    NotFound {
        /// The paths looked at, in order.
        searched: Vec<PathBuf>,
    },
    /// `OS_CLOUD` names a cloud but there is no clouds.yaml.
    #[error("OS_CLOUD is {name:?} but no clouds.yaml was found (searched {})", display_paths(.searched))]
    NoFileForCloud {
        /// The cloud asked for.
        name: String,
        /// The paths looked at, in order.
        searched: Vec<PathBuf>,
    },
    /// A variable points at a file that does not exist.
    #[error("{var} points at {path}, which does not exist")]
    MissingFile {
        /// `OS_CLIENT_CONFIG_FILE`, `OS_CLIENT_SECURE_FILE` or `OS_CLIENT_VENDOR_FILE`.
        var: &'static str,
        /// The path.
        path: PathBuf,
    },
    /// A file cannot be read or parsed.
    #[error(transparent)]
    File(#[from] ConfigError),
    /// The file does not have the clouds.yaml shape.
    #[error("{path}: {reason}")]
    Shape {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// `OS_CLOUD` names a cloud the file does not define.
    #[error("OS_CLOUD: cloud {name:?} is not defined in {path} (clouds: {available})")]
    UnknownCloud {
        /// The cloud asked for.
        name: String,
        /// The clouds.yaml.
        path: PathBuf,
        /// The clouds it defines.
        available: String,
    },
    /// No `OS_CLOUD` and several clouds to choose from.
    #[error("OS_CLOUD is not set and {path} defines several clouds ({available}): set OS_CLOUD")]
    Ambiguous {
        /// The clouds.yaml.
        path: PathBuf,
        /// The clouds it defines.
        available: String,
    },
    /// The selected cloud lacks something or has a bad value.
    #[error("cloud {cloud:?}: {key}: {reason}")]
    Invalid {
        /// The cloud.
        cloud: String,
        /// The key, e.g. `auth.auth_url`.
        key: String,
        /// What is wrong.
        reason: String,
    },
}

/// Loads the cloud named `os_cloud` (or the default one) following the rules of the module docs.
pub fn load(env: &CloudsEnv, os_cloud: Option<&str>) -> Result<Cloud, CloudsError> {
    let (clouds_file, searched) = env.find("OS_CLIENT_CONFIG_FILE", "clouds")?;
    let os_cloud = os_cloud.map(str::trim).filter(|s| !s.is_empty());
    let env_cloud = env_cloud(env);
    let (name, mut cloud) = match (&clouds_file, os_cloud) {
        (None, Some(name)) if name == ENV_CLOUD => (name.to_owned(), Value::Object(Map::new())),
        (None, Some(name)) => {
            return Err(CloudsError::NoFileForCloud {
                name: name.to_owned(),
                searched,
            });
        }
        (None, None) => {
            if env.var("OS_AUTH_URL").is_none() {
                return Err(CloudsError::NotFound { searched });
            }
            (ENV_CLOUD.to_owned(), Value::Object(Map::new()))
        }
        (Some(path), wanted) => {
            let clouds = read_section(path, "clouds")?;
            let available = clouds.keys().cloned().collect::<Vec<_>>().join(", ");
            let name = match wanted {
                Some(n) => n.to_owned(),
                None if clouds.len() == 1 => clouds.keys().next().cloned().unwrap_or_default(),
                None => {
                    return Err(CloudsError::Ambiguous {
                        path: path.clone(),
                        available,
                    });
                }
            };
            match clouds.get(&name) {
                Some(v) if v.is_object() => (name, v.clone()),
                Some(_) => {
                    return Err(CloudsError::Shape {
                        path: path.clone(),
                        reason: format!("clouds.{name} must be a mapping"),
                    });
                }
                None if name == ENV_CLOUD => (name, Value::Object(Map::new())),
                None => {
                    return Err(CloudsError::UnknownCloud {
                        name,
                        path: path.clone(),
                        available,
                    });
                }
            }
        }
    };

    // secure.yaml fills gaps of the same cloud name.
    if clouds_file.is_some() {
        let (secure_file, _) = env.find("OS_CLIENT_SECURE_FILE", "secure")?;
        if let Some(path) = secure_file {
            let secure = read_section(&path, "clouds")?;
            if let Some(extra) = secure.get(&name) {
                fill_gaps(&mut cloud, extra);
            }
        }
    }

    // The vendor profile fills gaps.
    let profile = str_at(&cloud, &["profile"]).or_else(|| str_at(&cloud, &["cloud"]));
    if let Some(profile) = profile {
        let vendor = vendor_profile(env, &profile)?.ok_or_else(|| CloudsError::Invalid {
            cloud: name.clone(),
            key: "profile".into(),
            reason: format!(
                "unknown profile {profile:?} (not in clouds-public.yaml, and not the built-in \"otc\")"
            ),
        })?;
        fill_gaps(&mut cloud, &vendor);
    }

    // OS_* variables fill whatever is still missing.
    fill_gaps(&mut cloud, &env_cloud);

    build(&name, clouds_file, &cloud)
}

#[cfg(test)]
mod tests;
