//! Chat templates rendered as transformers' apply_chat_template renders them: SmolLM2's and a
//! Llama-3-style one over a few conversations (`tests/fixtures/chat/templates.json`, written by
//! `tools/make_chat_fixtures.py`).

mod common;

use kpg::select::chat::{ChatTemplate, Message};
use serde_json::Value;

#[test]
fn templates_render_as_transformers_renders_them() {
    let path = common::fixtures().join("chat/templates.json");
    let f: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let templates = f["templates"].as_array().unwrap();
    let cases = f["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 12);
    for case in cases {
        let t = templates
            .iter()
            .find(|t| t["name"] == case["template"])
            .unwrap();
        let template = ChatTemplate {
            source: t["template"].as_str().unwrap().to_string(),
            bos_token: t["bos"].as_str().unwrap().to_string(),
            eos_token: t["eos"].as_str().unwrap().to_string(),
        };
        let messages: Vec<Message> = serde_json::from_value(case["messages"].clone()).unwrap();
        let gen = case["add_generation_prompt"].as_bool().unwrap();
        let got = template.render(&messages, gen).unwrap();
        assert_eq!(
            got,
            case["rendered"].as_str().unwrap(),
            "{}: {messages:?}",
            t["name"]
        );
    }
}

#[test]
fn a_template_that_raises_is_a_named_error() {
    let t = ChatTemplate {
        source: "{% if messages[0]['role'] != 'system' %}{{ raise_exception('system first') }}{% endif %}".into(),
        bos_token: String::new(),
        eos_token: String::new(),
    };
    let err = t
        .render(
            &[Message {
                role: "user".into(),
                content: "x".into(),
            }],
            true,
        )
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("chat template") && err.contains("system first"),
        "{err}"
    );
}
