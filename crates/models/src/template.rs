//! Chat templates (Jinja, as HF writes them) rendered with minijinja, configured like
//! transformers does: `trim_blocks`, `lstrip_blocks`, `raise_exception`, and the few Python string
//! methods templates call.

use foveate_core::{Error, Result};
use minijinja::value::{Value as JValue, ValueKind};
use minijinja::{Environment, ErrorKind};

pub fn render(
    file: &str,
    src: &str,
    messages: &serde_json::Value,
    bos: Option<&str>,
    eos: Option<&str>,
) -> Result<String> {
    let mut env = Environment::new();
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.add_function(
        "raise_exception",
        |msg: String| -> std::result::Result<JValue, minijinja::Error> {
            Err(minijinja::Error::new(ErrorKind::InvalidOperation, msg))
        },
    );
    env.set_unknown_method_callback(python_methods);
    let bad = |e: minijinja::Error| Error::format(file, "chat_template", e.to_string());
    env.add_template("chat", src).map_err(bad)?;
    let tmpl = env.get_template("chat").map_err(bad)?;
    let ctx = minijinja::context! {
        messages => JValue::from_serialize(messages),
        add_generation_prompt => true,
        bos_token => bos.unwrap_or(""),
        eos_token => eos.unwrap_or(""),
    };
    tmpl.render(ctx).map_err(bad)
}

fn python_methods(
    _: &minijinja::State,
    v: &JValue,
    method: &str,
    args: &[JValue],
) -> std::result::Result<JValue, minijinja::Error> {
    let unknown = || {
        minijinja::Error::new(
            ErrorKind::UnknownMethod,
            format!("method `{method}` is not supported in chat templates"),
        )
    };
    if let Some(s) = v.as_str() {
        let arg = |i: usize| args.get(i).and_then(|a| a.as_str()).map(String::from);
        return Ok(match method {
            "strip" => JValue::from(match arg(0) {
                Some(c) => s.trim_matches(|x| c.contains(x)).to_string(),
                None => s.trim().to_string(),
            }),
            "lstrip" => JValue::from(match arg(0) {
                Some(c) => s.trim_start_matches(|x| c.contains(x)).to_string(),
                None => s.trim_start().to_string(),
            }),
            "rstrip" => JValue::from(match arg(0) {
                Some(c) => s.trim_end_matches(|x| c.contains(x)).to_string(),
                None => s.trim_end().to_string(),
            }),
            "startswith" => JValue::from(arg(0).map(|p| s.starts_with(&p)).unwrap_or(false)),
            "endswith" => JValue::from(arg(0).map(|p| s.ends_with(&p)).unwrap_or(false)),
            "lower" => JValue::from(s.to_lowercase()),
            "upper" => JValue::from(s.to_uppercase()),
            "split" => {
                let parts: Vec<JValue> = match arg(0) {
                    Some(sep) => s.split(sep.as_str()).map(JValue::from).collect(),
                    None => s.split_whitespace().map(JValue::from).collect(),
                };
                JValue::from(parts)
            }
            _ => return Err(unknown()),
        });
    }
    if v.kind() == ValueKind::Map {
        match method {
            "items" => {
                let mut out = Vec::new();
                for k in v.try_iter()? {
                    let val = v.get_item(&k)?;
                    out.push(JValue::from(vec![k, val]));
                }
                return Ok(JValue::from(out));
            }
            "keys" => return Ok(JValue::from(v.try_iter()?.collect::<Vec<_>>())),
            "get" => {
                let key = args.first().cloned().unwrap_or(JValue::UNDEFINED);
                let val = v.get_item(&key)?;
                return Ok(if val.is_undefined() {
                    args.get(1).cloned().unwrap_or(JValue::from(()))
                } else {
                    val
                });
            }
            _ => {}
        }
    }
    Err(unknown())
}
