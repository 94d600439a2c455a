use super::*;

#[test]
fn field_path_builder() {
    let p = FieldPath::new("spec").child("extensions").index(1).child("providerConfig").child("configs");
    assert_eq!(p.key("node.worker-1").as_str(), r#"spec.extensions[1].providerConfig.configs["node.worker-1"]"#);
    assert_eq!(p.key("a\"b\n").as_str(), r#"spec.extensions[1].providerConfig.configs["a\"b\n"]"#);
    assert_eq!(FieldPath::new("").child("a").to_string(), "a");
    let e = FieldError::required(&p, "x");
    assert_eq!(e.to_string(), "spec.extensions[1].providerConfig.configs: Required value: x");
    assert_eq!(join_errors(std::slice::from_ref(&e)), e.to_string());
    assert_eq!(join_errors(&[e.clone(), e.clone()]), format!("[{e}, {e}]"));
}
