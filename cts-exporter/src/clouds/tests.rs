//! The loader rules of the module docs, one test each, through [`super::load`] on files in a temporary
//! directory tree.

use super::*;
use shared::testkit::TempDir;

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
