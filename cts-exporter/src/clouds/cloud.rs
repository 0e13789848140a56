//! The typed cloud: credentials, project, region, auth URL and TLS settings, built from the merged
//! document and checked (errors name the file, cloud and key, never a value).

use super::CloudsError;
use super::merge::{scalar, str_at};
use serde_json::Value;
use shared::config::{ConfigError, Secret, parse_bool};
use std::fmt;
use std::path::PathBuf;
use url::Url;

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

pub(super) fn build(
    name: &str,
    file: Option<PathBuf>,
    cloud: &Value,
) -> Result<Cloud, CloudsError> {
    let doc = Doc { name, cloud };
    let (project_id, project_name) = doc.project()?;
    let region = doc.region(project_name.as_deref())?;
    let auth_url = doc.auth_url(&region)?;
    doc.identity_version()?;
    let interface = doc.interface()?;
    let (verify, cacert) = doc.tls()?;
    let (user_domain, project_domain) = doc.domains();
    let credentials = doc.credentials(user_domain.is_some())?;
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

/// The merged document of one cloud, read key by key; every error names the cloud and the key.
struct Doc<'a> {
    name: &'a str,
    cloud: &'a Value,
}

impl Doc<'_> {
    fn invalid(&self, key: &str, reason: &str) -> CloudsError {
        CloudsError::Invalid {
            cloud: self.name.to_owned(),
            key: key.to_owned(),
            reason: reason.to_owned(),
        }
    }

    fn get(&self, path: &[&str]) -> Option<String> {
        str_at(self.cloud, path)
    }

    fn auth(&self, key: &str) -> Option<String> {
        self.get(&["auth", key])
    }

    /// `auth.project_id` and `auth.project_name`, at least one.
    fn project(&self) -> Result<(Option<String>, Option<String>), CloudsError> {
        let (id, name) = (self.auth("project_id"), self.auth("project_name"));
        if id.is_none() && name.is_none() {
            return Err(self.invalid(
                "auth.project_name",
                "a project_name or project_id is required (CTS traces belong to a project)",
            ));
        }
        Ok((id, name))
    }

    /// `region_name`, else the part of the project name before its first `_`.
    fn region(&self, project_name: Option<&str>) -> Result<String, CloudsError> {
        self.get(&["region_name"])
            .or_else(|| {
                project_name
                    .and_then(|p| p.split_once('_'))
                    .map(|(r, _)| r.to_owned())
                    .filter(|r| !r.is_empty())
            })
            .ok_or_else(|| {
                self.invalid(
                    "region_name",
                    "cannot tell the region: set region_name (or OS_REGION_NAME), or use a project_name like eu-de_myproject",
                )
            })
    }

    /// `auth.auth_url` with `{region_name}` substituted and `/v3` appended when missing.
    fn auth_url(&self, region: &str) -> Result<Url, CloudsError> {
        let raw = self
            .auth("auth_url")
            .ok_or_else(|| self.invalid("auth.auth_url", "is required"))?;
        normalize_auth_url(&raw.replace("{region_name}", region))
            .map_err(|reason| self.invalid("auth.auth_url", &reason))
    }

    fn identity_version(&self) -> Result<(), CloudsError> {
        match self.cloud.get("identity_api_version").and_then(scalar) {
            None => Ok(()),
            Some(v) if v == "3" || v == "3.0" => Ok(()),
            Some(_) => Err(self.invalid("identity_api_version", "only 3 is supported")),
        }
    }

    /// `interface` (or `endpoint_type`), `publicURL` spelled `public`.
    fn interface(&self) -> Result<String, CloudsError> {
        let interface = self
            .get(&["interface"])
            .or_else(|| self.get(&["endpoint_type"]))
            .map(|i| i.trim_end_matches("URL").to_ascii_lowercase())
            .unwrap_or_else(|| "public".to_owned());
        if !matches!(interface.as_str(), "public" | "internal" | "admin") {
            return Err(self.invalid(
                "interface",
                "must be public, internal or admin (publicURL, internalURL, adminURL)",
            ));
        }
        Ok(interface)
    }

    /// Whether to verify certificates (`verify: false`, or the older `insecure: true` that
    /// os-client-config also reads) and the extra CA file (`cacert`).
    fn tls(&self) -> Result<(bool, Option<PathBuf>), CloudsError> {
        let flag = |v: &Value, key: &str| {
            scalar(v)
                .as_deref()
                .and_then(parse_bool)
                .ok_or_else(|| self.invalid(key, "must be true or false"))
        };
        let verify = match (self.cloud.get("verify"), self.cloud.get("insecure")) {
            (None | Some(Value::Null), None | Some(Value::Null)) => true,
            (None | Some(Value::Null), Some(v)) => !flag(v, "insecure")?,
            (Some(v), _) => flag(v, "verify")?,
        };
        Ok((verify, self.get(&["cacert"]).map(PathBuf::from)))
    }

    /// The user's domain (`user_domain_*`, `domain_*`, `default_domain`) and the project's
    /// (`project_domain_*`, else the user's).
    fn domains(&self) -> (Option<DomainRef>, Option<DomainRef>) {
        let domain = |kind: &str| -> Option<DomainRef> {
            self.auth(&format!("{kind}domain_id"))
                .map(DomainRef::Id)
                .or_else(|| {
                    self.auth(&format!("{kind}domain_name"))
                        .map(DomainRef::Name)
                })
        };
        let user_domain = domain("user_")
            .or_else(|| domain(""))
            .or_else(|| self.auth("default_domain").map(DomainRef::Name));
        let project_domain = domain("project_").or_else(|| user_domain.clone());
        (user_domain, project_domain)
    }

    /// The credentials `auth_type` names, else the first present of token, AK/SK, password.
    fn credentials(&self, has_user_domain: bool) -> Result<Credentials, CloudsError> {
        let auth_type = self.get(&["auth_type"]).map(|t| t.to_ascii_lowercase());
        match auth_type.as_deref() {
            Some("token" | "v3token") => self
                .token()
                .ok_or_else(|| self.invalid("auth.token", "auth_type token needs a token")),
            Some("aksk" | "v3aksk") => self.aksk(),
            Some("password" | "v3password") => self.password(has_user_domain),
            Some(_) => Err(self.invalid(
                "auth_type",
                "supported: password, token, aksk (or leave it out)",
            )),
            None => {
                let (ak, sk) = (self.auth("ak"), self.auth("sk"));
                if let Some(token) = self.token() {
                    Ok(token)
                } else if ak.is_some() || sk.is_some() {
                    if ak.is_none() {
                        return Err(self.invalid("auth.ak", "sk is set but ak is missing"));
                    }
                    self.aksk()
                } else if self.auth("password").is_some() || self.user().is_some() {
                    self.password(has_user_domain)
                } else {
                    Err(self.invalid(
                        "auth",
                        "no credentials: set token, ak/sk, or username/password",
                    ))
                }
            }
        }
    }

    fn token(&self) -> Option<Credentials> {
        self.auth("token")
            .map(|t| Credentials::Token(Secret::new(t)))
    }

    fn user(&self) -> Option<UserRef> {
        self.auth("user_id")
            .map(UserRef::Id)
            .or_else(|| self.auth("username").map(UserRef::Name))
    }

    fn aksk(&self) -> Result<Credentials, CloudsError> {
        match (self.auth("ak"), self.auth("sk")) {
            (Some(ak), Some(sk)) => Ok(Credentials::AkSk {
                ak,
                sk: Secret::new(sk),
                security_token: self.auth("security_token").map(Secret::new),
            }),
            (Some(_), None) => Err(self.invalid("auth.sk", "ak is set but sk is missing")),
            _ => Err(self.invalid("auth.ak", "auth_type aksk needs ak and sk")),
        }
    }

    fn password(&self, has_user_domain: bool) -> Result<Credentials, CloudsError> {
        let user = self.user().ok_or_else(|| {
            self.invalid(
                "auth.username",
                "password authentication needs username or user_id",
            )
        })?;
        let password = self.auth("password").ok_or_else(|| {
            self.invalid("auth.password", "is required for password authentication")
        })?;
        if matches!(user, UserRef::Name(_)) && !has_user_domain {
            return Err(self.invalid(
                "auth.user_domain_name",
                "a username needs its domain (user_domain_name, user_domain_id or domain_name)",
            ));
        }
        Ok(Credentials::Password {
            user,
            password: Secret::new(password),
        })
    }
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
