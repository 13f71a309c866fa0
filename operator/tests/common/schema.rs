//! An object checked against a CRD's OpenAPI v3 schema as the API server checks it at
//! `kubectl apply` (strict field validation): types, required and unknown fields, enums,
//! patterns, lengths and ranges. CEL rules are checked apart (`validate_cel`).

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;
use kubemail_operator::crd::{MailCluster, MailDomain, Mailbox};
use serde_json::Value;

/// Checks a kubemail resource (YAML) as the API server would: the schema first, then the types
/// and the CEL rules. Its kind when it passes.
pub fn check_resource(yaml: &str) -> Result<&'static str, String> {
    let value: Value = serde_yaml::from_str(yaml).map_err(|e| e.to_string())?;
    let (kind, crd) = match value["kind"].as_str() {
        Some("MailCluster") => ("MailCluster", MailCluster::crd()),
        Some("MailDomain") => ("MailDomain", MailDomain::crd()),
        Some("Mailbox") => ("Mailbox", Mailbox::crd()),
        other => return Err(format!("unknown kind {other:?}")),
    };
    let wrong = violations(&crd, &value);
    if !wrong.is_empty() {
        return Err(wrong.join("; "));
    }
    let typed = |e: serde_json::Error| e.to_string();
    let cel = |e: kube::core::cel::ValidationErrors| e.to_string();
    match kind {
        "MailCluster" => serde_json::from_value::<MailCluster>(value).map_err(typed)?.validate_cel().map_err(cel)?,
        "MailDomain" => serde_json::from_value::<MailDomain>(value).map_err(typed)?.validate_cel().map_err(cel)?,
        _ => serde_json::from_value::<Mailbox>(value).map_err(typed)?.validate_cel().map_err(cel)?,
    }
    Ok(kind)
}

/// What is wrong with `object` under the schema of `crd`'s first version; empty if nothing.
pub fn violations(crd: &CustomResourceDefinition, object: &Value) -> Vec<String> {
    let version = &crd.spec.versions[0];
    let schema = serde_json::to_value(&version.schema.as_ref().unwrap().open_api_v3_schema).unwrap();
    let mut found = Vec::new();
    for field in ["spec", "status"] {
        if let Some(value) = object.get(field) {
            check(&schema["properties"][field], value, field, &mut found);
        }
    }
    found
}

fn check(schema: &Value, value: &Value, at: &str, found: &mut Vec<String>) {
    if schema.is_null() {
        found.push(format!("{at}: unknown field"));
        return;
    }
    if value.is_null() {
        if schema["nullable"] != true {
            found.push(format!("{at}: null"));
        }
        return;
    }
    if schema["x-kubernetes-int-or-string"] == true {
        if !(value.is_i64() || value.is_u64() || value.is_string()) {
            found.push(format!("{at}: must be an integer or a string"));
        }
        return;
    }
    if schema["x-kubernetes-preserve-unknown-fields"] == true && schema.get("properties").is_none() {
        return;
    }
    let type_ok = match schema["type"].as_str() {
        Some("object") => value.is_object(),
        Some("array") => value.is_array(),
        Some("string") => value.is_string(),
        Some("integer") => value.is_i64() || value.is_u64(),
        Some("number") => value.is_number(),
        Some("boolean") => value.is_boolean(),
        _ => true,
    };
    if !type_ok {
        found.push(format!("{at}: must be {}", schema["type"]));
        return;
    }
    if let Some(options) = schema["enum"].as_array()
        && !options.contains(value)
    {
        found.push(format!("{at}: {value} is not one of {options:?}"));
    }
    if let Some(text) = value.as_str() {
        if let Some(pattern) = schema["pattern"].as_str()
            && !regex::Regex::new(pattern).unwrap().is_match(text)
        {
            found.push(format!("{at}: {text:?} does not match {pattern}"));
        }
        let length = text.chars().count() as u64;
        if schema["minLength"].as_u64().is_some_and(|min| length < min) {
            found.push(format!("{at}: shorter than {}", schema["minLength"]));
        }
        if schema["maxLength"].as_u64().is_some_and(|max| length > max) {
            found.push(format!("{at}: longer than {}", schema["maxLength"]));
        }
    }
    if let Some(number) = value.as_f64() {
        if schema["minimum"].as_f64().is_some_and(|min| number < min) {
            found.push(format!("{at}: less than {}", schema["minimum"]));
        }
        if schema["maximum"].as_f64().is_some_and(|max| number > max) {
            found.push(format!("{at}: more than {}", schema["maximum"]));
        }
    }
    if let Some(items) = value.as_array() {
        if schema["maxItems"].as_u64().is_some_and(|max| items.len() as u64 > max) {
            found.push(format!("{at}: more than {} items", schema["maxItems"]));
        }
        for (i, item) in items.iter().enumerate() {
            check(&schema["items"], item, &format!("{at}[{i}]"), found);
        }
    }
    if let Some(fields) = value.as_object() {
        for required in schema["required"].as_array().into_iter().flatten() {
            if !fields.contains_key(required.as_str().unwrap_or_default()) {
                found.push(format!("{at}.{}: required", required.as_str().unwrap_or_default()));
            }
        }
        for (name, field) in fields {
            let field_schema = match (&schema["properties"][name], &schema["additionalProperties"]) {
                (Value::Null, Value::Object(_)) => &schema["additionalProperties"],
                (property, _) => property,
            };
            check(field_schema, field, &format!("{at}.{name}"), found);
        }
    }
}
