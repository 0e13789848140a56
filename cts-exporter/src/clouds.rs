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

use serde_json::{Map, Value};
use shared::config::{ConfigError, Secret, parse_bool};
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use thiserror::Error;
use url::Url;

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

fn display_paths(paths: &[PathBuf]) -> String {
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

    fn var(&self, name: &str) -> Option<&str> {
        self.vars
            .get(name)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
    }

    fn first_var(&self, names: &[&str]) -> Option<&str> {
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
    fn find(
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

/// A user, by id or by name (with a domain).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserRef {
    /// `user_id`.
    Id(String),
    /// `username`.
    Name(String),
}

/// A domain, by id or by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DomainRef {
    /// `*_domain_id`.
    Id(String),
    /// `*_domain_name`.
    Name(String),
}

/// How the exporter authenticates.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    /// A ready token (`auth.token`, `OS_TOKEN`): sent as `X-Auth-Token`, cannot be renewed.
    Token(Secret),
    /// A permanent or temporary access key: every request is signed (`SDK-HMAC-SHA256`).
    AkSk {
        /// Access key id (not secret, but only its start is logged).
        ak: String,
        /// Secret key.
        sk: Secret,
        /// `X-Security-Token` of a temporary access key.
        security_token: Option<Secret>,
    },
    /// User and password: an IAM token is requested and renewed.
    Password {
        /// The user.
        user: UserRef,
        /// The password.
        password: Secret,
    },
}

impl Credentials {
    /// `token`, `aksk` or `password`.
    pub fn kind(&self) -> &'static str {
        match self {
            Credentials::Token(_) => "token",
            Credentials::AkSk { .. } => "aksk",
            Credentials::Password { .. } => "password",
        }
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::Token(_) => f.write_str("Token(***)"),
            Credentials::AkSk { ak, .. } => write!(f, "AkSk {{ ak: {:?}, sk: *** }}", mask_ak(ak)),
            Credentials::Password { user, .. } => {
                write!(f, "Password {{ user: {user:?}, password: *** }}")
            }
        }
    }
}

/// The first four characters of an access key, then `***`.
pub fn mask_ak(ak: &str) -> String {
    let head: String = ak.chars().take(4).collect();
    format!("{head}***")
}

/// The selected, merged and validated cloud.
#[derive(Debug, Clone)]
pub struct Cloud {
    /// The cloud's name (`OS_CLOUD`, the only cloud, or `envvars` for a cloud from `OS_*` alone).
    pub name: String,
    /// The clouds.yaml it came from (none when built from `OS_*` variables only).
    pub file: Option<PathBuf>,
    /// IAM endpoint, ending in `/v3`.
    pub auth_url: Url,
    /// Credentials, after the precedence rule.
    pub credentials: Credentials,
    /// `project_id`, if given.
    pub project_id: Option<String>,
    /// `project_name`, if given.
    pub project_name: Option<String>,
    /// The user's domain (`user_domain_*`, else `domain_*`, else `default_domain`).
    pub user_domain: Option<DomainRef>,
    /// The project's domain (`project_domain_*`, else the user's domain).
    pub project_domain: Option<DomainRef>,
    /// Region (`region_name` or the `project_name` prefix).
    pub region: String,
    /// Catalog interface to use (`public` unless `interface`/`endpoint_type` say otherwise).
    pub interface: String,
    /// Verify TLS certificates (`verify`, `OS_INSECURE`).
    pub verify: bool,
    /// Extra CA bundle for IAM and CTS (`cacert`, `OS_CACERT`).
    pub cacert: Option<PathBuf>,
}

const BUILTIN_OTC_PROFILE: &str = r#"{
  "auth": {"auth_url": "https://iam.{region_name}.otc.t-systems.com/v3"},
  "regions": ["eu-de", "eu-nl"],
  "interface": "public",
  "identity_api_version": 3
}"#;

/// Name of the cloud built from `OS_*` variables alone.
pub const ENV_CLOUD: &str = "envvars";

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

fn read_section(path: &Path, section: &str) -> Result<Map<String, Value>, CloudsError> {
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

fn vendor_profile(env: &CloudsEnv, profile: &str) -> Result<Option<Value>, CloudsError> {
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

/// The cloud described by `OS_*` variables (and the `AWS_*` access key variables OpenStack accepts).
fn env_cloud(env: &CloudsEnv) -> Value {
    let mut auth = Map::new();
    let mut cloud = Map::new();
    let auth_keys: &[(&str, &[&str])] = &[
        ("auth_url", &["OS_AUTH_URL"]),
        ("username", &["OS_USERNAME"]),
        ("user_id", &["OS_USERID", "OS_USER_ID"]),
        ("password", &["OS_PASSWORD"]),
        ("user_domain_name", &["OS_USER_DOMAIN_NAME"]),
        ("user_domain_id", &["OS_USER_DOMAIN_ID"]),
        ("project_domain_name", &["OS_PROJECT_DOMAIN_NAME"]),
        ("project_domain_id", &["OS_PROJECT_DOMAIN_ID"]),
        ("domain_name", &["OS_DOMAIN_NAME"]),
        ("domain_id", &["OS_DOMAIN_ID"]),
        ("project_name", &["OS_PROJECT_NAME", "OS_TENANT_NAME"]),
        ("project_id", &["OS_PROJECT_ID", "OS_TENANT_ID"]),
        ("token", &["OS_TOKEN", "OS_AUTH_TOKEN"]),
        (
            "ak",
            &[
                "OS_ACCESS_KEY",
                "OS_ACCESS_KEY_ID",
                "OS_AK",
                "AWS_ACCESS_KEY_ID",
            ],
        ),
        (
            "sk",
            &[
                "OS_SECRET_KEY",
                "OS_ACCESS_KEY_SECRET",
                "OS_SK",
                "AWS_ACCESS_SECRET_KEY",
                "AWS_SECRET_ACCESS_KEY",
            ],
        ),
        ("security_token", &["OS_SECURITY_TOKEN"]),
    ];
    for (key, vars) in auth_keys {
        if let Some(v) = env.first_var(vars) {
            auth.insert((*key).into(), Value::from(v));
        }
    }
    let cloud_keys: &[(&str, &[&str])] = &[
        ("region_name", &["OS_REGION_NAME", "OS_REGION_ID"]),
        ("cacert", &["OS_CACERT", "OS_CA_CERT"]),
        ("interface", &["OS_INTERFACE", "OS_ENDPOINT_TYPE"]),
        ("auth_type", &["OS_AUTH_TYPE"]),
    ];
    for (key, vars) in cloud_keys {
        if let Some(v) = env.first_var(vars) {
            cloud.insert((*key).into(), Value::from(v));
        }
    }
    if let Some(insecure) = env.var("OS_INSECURE")
        && let Some(b) = parse_bool(insecure)
    {
        cloud.insert("verify".into(), Value::from(!b));
    }
    if !auth.is_empty() {
        cloud.insert("auth".into(), Value::Object(auth));
    }
    Value::Object(cloud)
}

/// Copies from `src` every key `dst` does not have (or has as null), recursing into mappings.
fn fill_gaps(dst: &mut Value, src: &Value) {
    let (Value::Object(d), Value::Object(s)) = (dst, src) else {
        return;
    };
    for (k, v) in s {
        match d.get_mut(k) {
            None | Some(Value::Null) => {
                d.insert(k.clone(), v.clone());
            }
            Some(existing @ Value::Object(_)) => fill_gaps(existing, v),
            Some(_) => {}
        }
    }
}

/// A scalar as text (YAML gives numbers for unquoted digits, e.g. a numeric password or project id).
fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.trim().to_owned()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
    .filter(|s| !s.is_empty())
}

fn str_at(v: &Value, path: &[&str]) -> Option<String> {
    let mut cur = v;
    for key in path {
        cur = cur.get(*key)?;
    }
    scalar(cur)
}

fn build(name: &str, file: Option<PathBuf>, cloud: &Value) -> Result<Cloud, CloudsError> {
    let invalid = |key: &str, reason: &str| CloudsError::Invalid {
        cloud: name.to_owned(),
        key: key.to_owned(),
        reason: reason.to_owned(),
    };
    let auth = |key: &str| str_at(cloud, &["auth", key]);

    let project_id = auth("project_id");
    let project_name = auth("project_name");
    if project_id.is_none() && project_name.is_none() {
        return Err(invalid(
            "auth.project_name",
            "a project_name or project_id is required (CTS traces belong to a project)",
        ));
    }

    let region = str_at(cloud, &["region_name"])
        .or_else(|| {
            project_name
                .as_deref()
                .and_then(|p| p.split_once('_'))
                .map(|(r, _)| r.to_owned())
                .filter(|r| !r.is_empty())
        })
        .ok_or_else(|| {
            invalid(
                "region_name",
                "cannot tell the region: set region_name (or OS_REGION_NAME), or use a project_name like eu-de_myproject",
            )
        })?;

    let raw_auth_url = auth("auth_url").ok_or_else(|| invalid("auth.auth_url", "is required"))?;
    let auth_url = normalize_auth_url(&raw_auth_url.replace("{region_name}", &region))
        .map_err(|reason| invalid("auth.auth_url", &reason))?;

    match cloud.get("identity_api_version").and_then(scalar) {
        None => {}
        Some(v) if v == "3" || v == "3.0" => {}
        Some(_) => return Err(invalid("identity_api_version", "only 3 is supported")),
    }

    let interface = str_at(cloud, &["interface"])
        .or_else(|| str_at(cloud, &["endpoint_type"]))
        .map(|i| i.trim_end_matches("URL").to_ascii_lowercase())
        .unwrap_or_else(|| "public".to_owned());
    if !matches!(interface.as_str(), "public" | "internal" | "admin") {
        return Err(invalid(
            "interface",
            "must be public, internal or admin (publicURL, internalURL, adminURL)",
        ));
    }

    // `verify: false`, or the older `insecure: true` that os-client-config also reads.
    let verify = match (cloud.get("verify"), cloud.get("insecure")) {
        (None | Some(Value::Null), None | Some(Value::Null)) => true,
        (None | Some(Value::Null), Some(v)) => !scalar(v)
            .as_deref()
            .and_then(parse_bool)
            .ok_or_else(|| invalid("insecure", "must be true or false"))?,
        (Some(v), _) => scalar(v)
            .as_deref()
            .and_then(parse_bool)
            .ok_or_else(|| invalid("verify", "must be true or false"))?,
    };
    let cacert = str_at(cloud, &["cacert"]).map(PathBuf::from);

    let domain = |kind: &str| -> Option<DomainRef> {
        auth(&format!("{kind}domain_id"))
            .map(DomainRef::Id)
            .or_else(|| auth(&format!("{kind}domain_name")).map(DomainRef::Name))
    };
    let user_domain = domain("user_")
        .or_else(|| domain(""))
        .or_else(|| auth("default_domain").map(DomainRef::Name));
    let project_domain = domain("project_").or_else(|| user_domain.clone());

    let token = auth("token");
    let ak = auth("ak");
    let sk = auth("sk");
    let password = auth("password");
    let user = auth("user_id")
        .map(UserRef::Id)
        .or_else(|| auth("username").map(UserRef::Name));
    let aksk = || -> Result<Credentials, CloudsError> {
        match (&ak, &sk) {
            (Some(ak), Some(sk)) => Ok(Credentials::AkSk {
                ak: ak.clone(),
                sk: Secret::new(sk.clone()),
                security_token: auth("security_token").map(Secret::new),
            }),
            (Some(_), None) => Err(invalid("auth.sk", "ak is set but sk is missing")),
            _ => Err(invalid("auth.ak", "auth_type aksk needs ak and sk")),
        }
    };
    let password_creds = || -> Result<Credentials, CloudsError> {
        let user = user.clone().ok_or_else(|| {
            invalid(
                "auth.username",
                "password authentication needs username or user_id",
            )
        })?;
        let password = password
            .clone()
            .ok_or_else(|| invalid("auth.password", "is required for password authentication"))?;
        if matches!(user, UserRef::Name(_)) && user_domain.is_none() {
            return Err(invalid(
                "auth.user_domain_name",
                "a username needs its domain (user_domain_name, user_domain_id or domain_name)",
            ));
        }
        Ok(Credentials::Password {
            user,
            password: Secret::new(password),
        })
    };
    let auth_type = str_at(cloud, &["auth_type"]).map(|t| t.to_ascii_lowercase());
    let credentials = match auth_type.as_deref() {
        Some("token" | "v3token") => Credentials::Token(Secret::new(
            token.ok_or_else(|| invalid("auth.token", "auth_type token needs a token"))?,
        )),
        Some("aksk" | "v3aksk") => aksk()?,
        Some("password" | "v3password") => password_creds()?,
        Some(_) => {
            return Err(invalid(
                "auth_type",
                "supported: password, token, aksk (or leave it out)",
            ));
        }
        None => {
            if let Some(token) = token {
                Credentials::Token(Secret::new(token))
            } else if ak.is_some() || sk.is_some() {
                if sk.is_some() && ak.is_none() {
                    return Err(invalid("auth.ak", "sk is set but ak is missing"));
                }
                aksk()?
            } else if password.is_some() || user.is_some() {
                password_creds()?
            } else {
                return Err(invalid(
                    "auth",
                    "no credentials: set token, ak/sk, or username/password",
                ));
            }
        }
    };

    Ok(Cloud {
        name: name.to_owned(),
        file,
        auth_url,
        credentials,
        project_id,
        project_name,
        user_domain,
        project_domain,
        region,
        interface,
        verify,
        cacert,
    })
}

/// Parses `auth_url`, makes sure it ends in `/v3` (no version discovery, as gophertelekomcloud does for
/// `/v3` URLs) and drops a trailing `/`.
fn normalize_auth_url(raw: &str) -> Result<Url, String> {
    let trimmed = raw.trim().trim_end_matches('/');
    let with_version = if trimmed.ends_with("/v3") {
        trimmed.to_owned()
    } else {
        format!("{trimmed}/v3")
    };
    let url = Url::parse(&with_version).map_err(|e| format!("not a valid URL: {e}"))?;
    shared::config::check_http_url("auth_url", &url).map_err(|e| match e {
        ConfigError::Invalid { reason, .. } => reason,
        other => other.to_string(),
    })?;
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::TempDir;

    struct Fixture {
        root: TempDir,
    }

    impl Fixture {
        fn new() -> Self {
            let root = TempDir::new("clouds");
            for d in ["cwd", "home/.config/openstack", "etc"] {
                std::fs::create_dir_all(root.path().join(d)).unwrap();
            }
            Self { root }
        }
        fn write(&self, rel: &str, text: &str) -> PathBuf {
            let p = self.root.path().join(rel);
            std::fs::write(&p, text).unwrap();
            p
        }
        fn env(&self, vars: &[(&str, &str)]) -> CloudsEnv {
            CloudsEnv {
                vars: vars
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                cwd: self.root.path().join("cwd"),
                home: Some(self.root.path().join("home")),
                etc: self.root.path().join("etc"),
            }
        }
    }

    fn cloud_yaml(name: &str, auth_url: &str) -> String {
        format!(
            "clouds:\n  {name}:\n    auth:\n      auth_url: {auth_url}\n      username: u\n      password: p\n      project_name: eu-de_proj\n      user_domain_name: OTC001\n"
        )
    }

    #[test]
    fn search_order_env_file_then_cwd_then_home_then_etc() {
        let f = Fixture::new();
        f.write("etc/clouds.yaml", &cloud_yaml("c", "https://etc/v3"));
        let url = |vars: &[(&str, &str)]| {
            load(&f.env(vars), Some("c"))
                .unwrap()
                .auth_url
                .host_str()
                .unwrap()
                .to_owned()
        };
        assert_eq!(url(&[]), "etc");
        f.write(
            "home/.config/openstack/clouds.yml",
            &cloud_yaml("c", "https://home/v3"),
        );
        assert_eq!(url(&[]), "home");
        f.write("cwd/clouds.json", &cloud_yaml("c", "https://cwd/v3"));
        assert_eq!(url(&[]), "cwd");
        let explicit = f.write("explicit.yaml", &cloud_yaml("c", "https://explicit/v3"));
        let explicit = explicit.to_str().unwrap();
        assert_eq!(url(&[("OS_CLIENT_CONFIG_FILE", explicit)]), "explicit");
        let err = load(
            &f.env(&[("OS_CLIENT_CONFIG_FILE", "/nonexistent/clouds.yaml")]),
            Some("c"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("OS_CLIENT_CONFIG_FILE points at"), "{err}");
    }

    #[test]
    fn files_are_not_merged_across_directories() {
        let f = Fixture::new();
        f.write("etc/clouds.yaml", &cloud_yaml("other", "https://etc/v3"));
        f.write("cwd/clouds.yaml", &cloud_yaml("c", "https://cwd/v3"));
        let err = load(&f.env(&[]), Some("other")).unwrap_err().to_string();
        assert!(
            err.contains("cloud \"other\" is not defined") && err.contains("(clouds: c)"),
            "{err}"
        );
    }

    #[test]
    fn missing_file_and_unknown_cloud_are_clear_errors() {
        let f = Fixture::new();
        let err = load(&f.env(&[]), None).unwrap_err().to_string();
        assert!(
            err.starts_with("no clouds.yaml found (searched ") && err.contains("etc/clouds.json"),
            "{err}"
        );
        let err = load(&f.env(&[]), Some("otc")).unwrap_err().to_string();
        assert!(
            err.starts_with("OS_CLOUD is \"otc\" but no clouds.yaml"),
            "{err}"
        );
        f.write(
            "cwd/clouds.yaml",
            &format!(
                "{}{}",
                cloud_yaml("a", "https://a/v3"),
                cloud_yaml("b", "https://b/v3").replace("clouds:\n", "")
            ),
        );
        let err = load(&f.env(&[]), Some("zzz")).unwrap_err().to_string();
        assert!(err.contains("\"zzz\" is not defined"), "{err}");
        let err = load(&f.env(&[]), None).unwrap_err().to_string();
        assert!(err.contains("several clouds (a, b): set OS_CLOUD"), "{err}");
        f.write("cwd/clouds.yaml", "clouds: [\n");
        let err = load(&f.env(&[]), Some("a")).unwrap_err().to_string();
        assert!(err.contains("clouds.yaml"), "{err}");
        f.write("cwd/clouds.yaml", "other: {}\n");
        let err = load(&f.env(&[]), Some("a")).unwrap_err().to_string();
        assert!(err.contains("no \"clouds\" mapping"), "{err}");
    }

    #[test]
    fn the_only_cloud_is_selected_without_os_cloud() {
        let f = Fixture::new();
        f.write("cwd/clouds.yaml", &cloud_yaml("only", "https://iam/v3"));
        let c = load(&f.env(&[]), None).unwrap();
        assert_eq!(c.name, "only");
        assert_eq!(c.file, Some(f.root.path().join("cwd/clouds.yaml")));
    }

    #[test]
    fn secure_yaml_fills_gaps_and_clouds_yaml_wins() {
        let f = Fixture::new();
        f.write(
            "cwd/clouds.yaml",
            "clouds:\n  c:\n    auth:\n      auth_url: https://iam/v3\n      username: file-user\n      project_name: eu-de_p\n      user_domain_name: D\n",
        );
        f.write(
            "etc/secure.yaml",
            "clouds:\n  c:\n    auth:\n      username: secure-user\n      password: s3cret\n  other:\n    auth:\n      password: nope\n",
        );
        let c = load(&f.env(&[]), Some("c")).unwrap();
        match c.credentials {
            Credentials::Password { user, password } => {
                assert_eq!(user, UserRef::Name("file-user".into()));
                assert_eq!(password.expose(), "s3cret");
            }
            other => panic!("{other:?}"),
        }
        // OS_CLIENT_SECURE_FILE takes precedence over the directories.
        let secure = f.write(
            "explicit-secure.yaml",
            "clouds:\n  c:\n    auth:\n      password: from-var\n",
        );
        let c = load(
            &f.env(&[("OS_CLIENT_SECURE_FILE", secure.to_str().unwrap())]),
            Some("c"),
        )
        .unwrap();
        assert!(
            matches!(c.credentials, Credentials::Password { password, .. } if password.expose() == "from-var")
        );
    }

    #[test]
    fn os_variables_are_fallbacks_and_the_file_wins() {
        let f = Fixture::new();
        f.write(
            "cwd/clouds.yaml",
            "clouds:\n  c:\n    auth:\n      auth_url: https://file/v3\n      project_name: eu-de_p\n",
        );
        let c = load(
            &f.env(&[
                ("OS_AUTH_URL", "https://env/v3"),
                ("OS_USERNAME", "env-user"),
                ("OS_PASSWORD", "env-pw"),
                ("OS_USER_DOMAIN_NAME", "OTC1"),
                ("OS_REGION_NAME", "eu-nl"),
            ]),
            Some("c"),
        )
        .unwrap();
        assert_eq!(c.auth_url.host_str(), Some("file"));
        assert_eq!(c.region, "eu-nl");
        assert_eq!(c.user_domain, Some(DomainRef::Name("OTC1".into())));
        assert!(matches!(c.credentials, Credentials::Password { .. }));

        // Without any file, OS_* alone make a cloud.
        let g = Fixture::new();
        let c = load(
            &g.env(&[
                ("OS_AUTH_URL", "https://iam.eu-de.example:443/v3/"),
                ("OS_ACCESS_KEY", "AKAKAKAK"),
                ("OS_SECRET_KEY", "sksk"),
                ("OS_PROJECT_NAME", "eu-de_proj"),
            ]),
            None,
        )
        .unwrap();
        assert_eq!(c.name, ENV_CLOUD);
        assert_eq!(c.auth_url.as_str(), "https://iam.eu-de.example/v3");
        assert!(matches!(c.credentials, Credentials::AkSk { ref ak, .. } if ak == "AKAKAKAK"));
        // AWS-style names are accepted too.
        let c = load(
            &g.env(&[
                ("OS_AUTH_URL", "https://iam/v3"),
                ("AWS_ACCESS_KEY_ID", "AK2"),
                ("AWS_SECRET_ACCESS_KEY", "SK2"),
                ("OS_TENANT_NAME", "eu-de_proj"),
            ]),
            None,
        )
        .unwrap();
        assert!(matches!(c.credentials, Credentials::AkSk { ref ak, .. } if ak == "AK2"));
    }

    #[test]
    fn region_from_region_name_or_project_prefix() {
        let f = Fixture::new();
        f.write("cwd/clouds.yaml", &cloud_yaml("c", "https://iam/v3"));
        assert_eq!(load(&f.env(&[]), Some("c")).unwrap().region, "eu-de");
        f.write(
            "cwd/clouds.yaml",
            &format!(
                "{}    region_name: eu-ch2\n",
                cloud_yaml("c", "https://iam.{region_name}.example/v3")
            ),
        );
        let c = load(&f.env(&[]), Some("c")).unwrap();
        assert_eq!(c.region, "eu-ch2");
        assert_eq!(c.auth_url.as_str(), "https://iam.eu-ch2.example/v3");
        f.write(
            "cwd/clouds.yaml",
            &cloud_yaml("c", "https://iam/v3").replace("eu-de_proj", "proj"),
        );
        let err = load(&f.env(&[]), Some("c")).unwrap_err().to_string();
        assert!(
            err.starts_with("cloud \"c\": region_name: cannot tell the region"),
            "{err}"
        );
    }

    #[test]
    fn otc_profile_fills_auth_url_from_region() {
        let f = Fixture::new();
        f.write(
            "cwd/clouds.yaml",
            "clouds:\n  otc:\n    profile: otc\n    auth:\n      username: u\n      password: p\n      project_name: eu-nl_proj\n      user_domain_name: OTC001\n",
        );
        let c = load(&f.env(&[]), Some("otc")).unwrap();
        assert_eq!(
            c.auth_url.as_str(),
            "https://iam.eu-nl.otc.t-systems.com/v3"
        );
        assert_eq!(c.interface, "public");
        // A vendor file can define other profiles.
        f.write(
            "cwd/clouds-public.yaml",
            "public-clouds:\n  mine:\n    auth:\n      auth_url: https://vendor.example/v3\n",
        );
        f.write(
            "cwd/clouds.yaml",
            "clouds:\n  c:\n    profile: mine\n    auth:\n      token: t\n      project_id: p1\n    region_name: r1\n",
        );
        let c = load(&f.env(&[]), Some("c")).unwrap();
        assert_eq!(c.auth_url.host_str(), Some("vendor.example"));
        f.write(
            "cwd/clouds.yaml",
            "clouds:\n  c:\n    profile: nope\n    auth:\n      token: t\n      project_id: p1\n    region_name: r1\n",
        );
        let err = load(&f.env(&[]), Some("c")).unwrap_err().to_string();
        assert!(err.contains("profile: unknown profile \"nope\""), "{err}");
    }

    #[test]
    fn credential_precedence_token_then_aksk_then_password() {
        let f = Fixture::new();
        let base = "clouds:\n  c:\n    region_name: eu-de\n    auth:\n      auth_url: https://iam/v3\n      project_name: eu-de_p\n      username: u\n      password: p\n      user_domain_name: D\n";
        f.write("cwd/clouds.yaml", base);
        assert_eq!(
            load(&f.env(&[]), Some("c")).unwrap().credentials.kind(),
            "password"
        );
        f.write(
            "cwd/clouds.yaml",
            &format!("{base}      ak: AK\n      sk: SK\n"),
        );
        assert_eq!(
            load(&f.env(&[]), Some("c")).unwrap().credentials.kind(),
            "aksk"
        );
        f.write(
            "cwd/clouds.yaml",
            &format!("{base}      ak: AK\n      sk: SK\n      token: T\n"),
        );
        assert_eq!(
            load(&f.env(&[]), Some("c")).unwrap().credentials.kind(),
            "token"
        );
        // An explicit auth_type chooses.
        f.write(
            "cwd/clouds.yaml",
            &format!("{base}      ak: AK\n      sk: SK\n    auth_type: password\n"),
        );
        assert_eq!(
            load(&f.env(&[]), Some("c")).unwrap().credentials.kind(),
            "password"
        );
        f.write("cwd/clouds.yaml", &format!("{base}      ak: AK\n"));
        let err = load(&f.env(&[]), Some("c")).unwrap_err().to_string();
        assert!(
            err.contains("auth.sk: ak is set but sk is missing"),
            "{err}"
        );
    }

    #[test]
    fn numbers_in_yaml_are_text_and_secrets_do_not_print() {
        let f = Fixture::new();
        f.write(
            "cwd/clouds.yaml",
            "clouds:\n  c:\n    auth:\n      auth_url: https://iam/v3\n      user_id: 12345\n      password: 987654\n      project_id: 4567\n    region_name: eu-de\n    verify: false\n",
        );
        let c = load(&f.env(&[]), Some("c")).unwrap();
        assert_eq!(c.project_id.as_deref(), Some("4567"));
        f.write(
            "cwd/clouds.yaml",
            "clouds:\n  c:\n    auth:\n      auth_url: https://iam/v3\n      token: t\n      project_id: p\n    region_name: eu-de\n    insecure: true\n",
        );
        assert!(
            !load(&f.env(&[]), Some("c")).unwrap().verify,
            "insecure: true"
        );
        f.write(
            "cwd/clouds.yaml",
            "clouds:\n  c:\n    auth:\n      auth_url: https://iam/v3\n      token: t\n      project_id: p\n    region_name: eu-de\n    insecure: maybe\n",
        );
        let err = load(&f.env(&[]), Some("c")).unwrap_err().to_string();
        assert!(err.contains("insecure: must be true or false"), "{err}");
        assert!(!c.verify);
        let shown = format!("{c:?}");
        assert!(!shown.contains("987654"), "{shown}");
        assert!(
            matches!(c.credentials, Credentials::Password { user: UserRef::Id(ref id), ref password } if id == "12345" && password.expose() == "987654")
        );
    }

    #[test]
    fn missing_pieces_name_the_key() {
        let f = Fixture::new();
        let cases = [
            (
                "clouds:\n  c:\n    auth:\n      project_name: eu-de_p\n      token: t\n",
                "cloud \"c\": auth.auth_url: is required",
            ),
            (
                "clouds:\n  c:\n    auth:\n      auth_url: https://iam/v3\n      token: t\n",
                "cloud \"c\": auth.project_name:",
            ),
            (
                "clouds:\n  c:\n    auth:\n      auth_url: https://iam/v3\n      project_name: eu-de_p\n",
                "cloud \"c\": auth: no credentials",
            ),
            (
                "clouds:\n  c:\n    auth:\n      auth_url: https://iam/v3\n      project_name: eu-de_p\n      username: u\n      password: p\n",
                "cloud \"c\": auth.user_domain_name:",
            ),
            (
                "clouds:\n  c:\n    auth:\n      auth_url: ftp://iam/v3\n      project_name: eu-de_p\n      token: t\n",
                "cloud \"c\": auth.auth_url: must be an http",
            ),
            (
                "clouds:\n  c:\n    identity_api_version: 2\n    auth:\n      auth_url: https://iam/v3\n      project_name: eu-de_p\n      token: t\n",
                "cloud \"c\": identity_api_version: only 3",
            ),
        ];
        for (yaml, want) in cases {
            f.write("cwd/clouds.yaml", yaml);
            let err = load(&f.env(&[]), Some("c")).unwrap_err().to_string();
            assert!(err.starts_with(want), "{err} / {want}");
        }
    }

    #[test]
    fn auth_url_gets_v3_and_domains_resolve() {
        let f = Fixture::new();
        f.write(
            "cwd/clouds.yaml",
            "clouds:\n  c:\n    auth:\n      auth_url: https://iam.example:443\n      username: u\n      password: p\n      domain_id: d-1\n      project_name: eu-de_p\n      project_domain_name: PD\n    interface: publicURL\n",
        );
        let c = load(&f.env(&[]), Some("c")).unwrap();
        assert_eq!(c.auth_url.as_str(), "https://iam.example/v3");
        assert_eq!(c.user_domain, Some(DomainRef::Id("d-1".into())));
        assert_eq!(c.project_domain, Some(DomainRef::Name("PD".into())));
        assert_eq!(c.interface, "public");
    }

    #[test]
    fn the_example_clouds_yaml_loads() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../config/clouds.yaml");
        let f = Fixture::new();
        let env = f.env(&[("OS_CLIENT_CONFIG_FILE", path)]);
        let kinds: Vec<(String, &str, String)> = ["otc", "otc-aksk", "otc-token"]
            .iter()
            .map(|name| {
                let c = load(&env, Some(name)).unwrap();
                (
                    c.region.clone(),
                    c.credentials.kind(),
                    c.auth_url.to_string(),
                )
            })
            .collect();
        assert_eq!(
            kinds,
            vec![
                (
                    "eu-de".into(),
                    "password",
                    "https://iam.eu-de.otc.t-systems.com/v3".into()
                ),
                (
                    "eu-de".into(),
                    "aksk",
                    "https://iam.eu-de.otc.t-systems.com/v3".into()
                ),
                (
                    "eu-nl".into(),
                    "token",
                    "https://iam.eu-nl.otc.t-systems.com/v3".into()
                ),
            ]
        );
    }
}
