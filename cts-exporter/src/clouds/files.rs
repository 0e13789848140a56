//! Where the loader looks: `$OS_CLIENT_CONFIG_FILE` (and the secure and vendor files' variables), then
//! `./`, `~/.config/openstack/`, `/etc/openstack/`, each with `.yaml`, `.yml`, `.json`; and how one top-level
//! section of a found file is read.

use super::CloudsError;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub(super) fn display_paths(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Where the loader looks: the variables and the three directories of the search order.
#[derive(Debug, Clone, Default)]
pub struct CloudsEnv {
    /// Environment variables (`OS_*`, `OS_CLIENT_*_FILE`, `AWS_*`).
    pub vars: HashMap<String, String>,
    /// The current directory (`./clouds.yaml`).
    pub cwd: PathBuf,
    /// The user's home (`~/.config/openstack/`), if known.
    pub home: Option<PathBuf>,
    /// The system directory (`/etc/openstack`).
    pub etc: PathBuf,
}

impl CloudsEnv {
    /// The process environment, current directory, `$HOME` and `/etc/openstack`.
    pub fn from_process() -> Self {
        Self::with_vars(std::env::vars())
    }

    /// Given variables, with the process's current directory, `$HOME` (from `vars`) and `/etc/openstack`.
    pub fn with_vars<I: IntoIterator<Item = (String, String)>>(vars: I) -> Self {
        let vars: HashMap<String, String> = vars.into_iter().collect();
        let home = vars
            .get("HOME")
            .filter(|h| !h.is_empty())
            .map(PathBuf::from);
        Self {
            vars,
            cwd: std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")),
            home,
            etc: PathBuf::from("/etc/openstack"),
        }
    }

    pub(super) fn var(&self, name: &str) -> Option<&str> {
        self.vars
            .get(name)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
    }

    pub(super) fn first_var(&self, names: &[&str]) -> Option<&str> {
        names.iter().find_map(|n| self.var(n))
    }

    fn dirs(&self) -> Vec<PathBuf> {
        let mut dirs = vec![self.cwd.clone()];
        if let Some(home) = &self.home {
            dirs.push(home.join(".config/openstack"));
        }
        dirs.push(self.etc.clone());
        dirs
    }

    /// The file named by `var`, else the first `<stem>.{yaml,yml,json}` in the search directories.
    /// Returns the file (if any) and every path looked at.
    pub(super) fn find(
        &self,
        var: &'static str,
        stem: &str,
    ) -> Result<(Option<PathBuf>, Vec<PathBuf>), CloudsError> {
        if let Some(path) = self.var(var) {
            let path = PathBuf::from(path);
            if path.is_file() {
                return Ok((Some(path), Vec::new()));
            }
            return Err(CloudsError::MissingFile { var, path });
        }
        let mut searched = Vec::new();
        for dir in self.dirs() {
            for ext in ["yaml", "yml", "json"] {
                let path = dir.join(format!("{stem}.{ext}"));
                if path.is_file() {
                    return Ok((Some(path), searched));
                }
                searched.push(path);
            }
        }
        Ok((None, searched))
    }
}

const BUILTIN_OTC_PROFILE: &str = r#"{
  "auth": {"auth_url": "https://iam.{region_name}.otc.t-systems.com/v3"},
  "regions": ["eu-de", "eu-nl"],
  "interface": "public",
  "identity_api_version": 3
}"#;

pub(super) fn read_section(path: &Path, section: &str) -> Result<Map<String, Value>, CloudsError> {
    let doc: Value = shared::config::load_yaml_file(path)?;
    match doc {
        Value::Object(mut top) => match top.remove(section) {
            Some(Value::Object(m)) => Ok(m),
            Some(Value::Null) | None => Err(CloudsError::Shape {
                path: path.to_owned(),
                reason: format!("no {section:?} mapping at the top level"),
            }),
            Some(_) => Err(CloudsError::Shape {
                path: path.to_owned(),
                reason: format!("{section:?} must be a mapping"),
            }),
        },
        _ => Err(CloudsError::Shape {
            path: path.to_owned(),
            reason: "expected a mapping at the top level".into(),
        }),
    }
}

pub(super) fn vendor_profile(env: &CloudsEnv, profile: &str) -> Result<Option<Value>, CloudsError> {
    let (vendor_file, _) = env.find("OS_CLIENT_VENDOR_FILE", "clouds-public")?;
    if let Some(path) = vendor_file {
        let vendors = read_section(&path, "public-clouds")?;
        if let Some(v) = vendors.get(profile) {
            return Ok(Some(v.clone()));
        }
    }
    if profile == "otc" {
        return Ok(serde_json::from_str(BUILTIN_OTC_PROFILE).ok());
    }
    Ok(None)
}
