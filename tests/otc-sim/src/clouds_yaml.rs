//! A `clouds.yaml` that points at the simulator: cloud `otc-sim` (password) and `otc-sim-aksk` (AK/SK).

use crate::state::SimState;

/// Double-quoted YAML scalar.
fn q(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Name of the password cloud in the generated clouds.yaml.
pub const PASSWORD_CLOUD: &str = "otc-sim";
/// Name of the AK/SK cloud in the generated clouds.yaml.
pub const AKSK_CLOUD: &str = "otc-sim-aksk";

pub(crate) fn render(state: &SimState) -> String {
    let c = &state.cfg.credentials;
    let auth_url = format!("{}/v3", state.base_url);
    let project = &state.identity.primary().name;
    let domain = &state.identity.domain_name;
    let region = &state.cfg.region;
    let common = format!(
        "    region_name: {}\n    interface: \"public\"\n    identity_api_version: 3\n",
        q(region)
    );
    format!(
        "# Written by otc-sim: a FAKE of Open Telekom Cloud IAM + CTS for tests and the local demo. Not OTC.\n\
         clouds:\n\
         \x20 {PASSWORD_CLOUD}:\n\
         \x20   auth:\n\
         \x20     auth_url: {auth_url}\n\
         \x20     username: {user}\n\
         \x20     password: {password}\n\
         \x20     project_name: {project}\n\
         \x20     user_domain_name: {domain}\n\
         {common}\
         \x20 {AKSK_CLOUD}:\n\
         \x20   auth:\n\
         \x20     auth_url: {auth_url}\n\
         \x20     ak: {ak}\n\
         \x20     sk: {sk}\n\
         \x20     project_name: {project}\n\
         \x20     user_domain_name: {domain}\n\
         {common}",
        auth_url = q(&auth_url),
        user = q(&c.user_name),
        password = q(&c.password),
        project = q(project),
        domain = q(domain),
        ak = q(&c.access_key),
        sk = q(&c.secret_key),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SimConfig;

    #[test]
    fn renders_both_clouds() {
        let st = SimState::new(
            SimConfig::default().user("u\"x", "p"),
            "http://127.0.0.1:1".into(),
        );
        let y = render(&st);
        assert!(
            y.contains("  otc-sim:\n    auth:\n      auth_url: \"http://127.0.0.1:1/v3\"\n"),
            "{y}"
        );
        assert!(y.contains("username: \"u\\\"x\""), "{y}");
        assert!(y.contains("  otc-sim-aksk:\n"));
        assert!(y.contains("ak: \"OTCSIMACCESSKEY00001\""));
        assert_eq!(y.matches("region_name: \"eu-de\"").count(), 2);
    }
}
