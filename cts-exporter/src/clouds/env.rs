//! The cloud the `OS_*` variables describe (and the `AWS_*` access key variables OpenStack accepts):
//! fallbacks for what the file leaves empty, or the whole cloud when there is no file.

use super::CloudsEnv;
use serde_json::{Map, Value};
use shared::config::parse_bool;

/// Name of the cloud built from `OS_*` variables alone.
pub const ENV_CLOUD: &str = "envvars";

/// The cloud described by `OS_*` variables (and the `AWS_*` access key variables OpenStack accepts).
pub(super) fn env_cloud(env: &CloudsEnv) -> Value {
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
