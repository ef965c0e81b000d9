//! Schema fingerprints: the Parsing Canonical Form of the Avro specification and its CRC-64-AVRO
//! (Rabin) fingerprint, computed here rather than with apache-avro (see the module doc of
//! [`crate::avro`]).

use serde_json::Value as Json;

/// The CRC-64-AVRO fingerprint of a schema given as JSON text, in message byte order.
pub(super) fn fingerprint(schema_json: &str) -> Result<[u8; 8], String> {
    Ok(rabin(parsing_canonical_form(schema_json)?.as_bytes()))
}

/// The full name of a named schema given as JSON text.
pub(super) fn schema_full_name(schema_json: &str) -> Result<String, String> {
    let json: Json = serde_json::from_str(schema_json).map_err(|error| error.to_string())?;
    let name = json.get("name").and_then(Json::as_str).ok_or("schema has no name")?;
    let namespace = json.get("namespace").and_then(Json::as_str);
    Ok(full_name(name, namespace, ""))
}

const PRIMITIVES: [&str; 8] = ["null", "boolean", "int", "long", "float", "double", "bytes", "string"];

/// The Parsing Canonical Form of the Avro specification: primitives in their simple form
/// (logical types dropped), full names, only the attributes that matter for parsing, in the
/// order name, type, fields, symbols, items, values, size, no whitespace.
pub(super) fn parsing_canonical_form(schema_json: &str) -> Result<String, String> {
    let json: Json = serde_json::from_str(schema_json).map_err(|error| error.to_string())?;
    let mut out = String::with_capacity(schema_json.len());
    write_canonical(&json, "", &mut out)?;
    Ok(out)
}

fn write_canonical(schema: &Json, namespace: &str, out: &mut String) -> Result<(), String> {
    match schema {
        Json::String(name) if PRIMITIVES.contains(&name.as_str()) => push_quoted(out, name),
        Json::String(name) => push_quoted(out, &full_name(name, None, namespace)),
        Json::Array(branches) => {
            out.push('[');
            for (position, branch) in branches.iter().enumerate() {
                if position > 0 {
                    out.push(',');
                }
                write_canonical(branch, namespace, out)?;
            }
            out.push(']');
        }
        Json::Object(object) => {
            let kind = object.get("type").ok_or("schema object without a type")?;
            let Json::String(kind) = kind else {
                return write_canonical(kind, namespace, out);
            };
            match kind.as_str() {
                "record" | "error" | "enum" | "fixed" => {
                    let name = object.get("name").and_then(Json::as_str).ok_or("named schema without a name")?;
                    let qualified = full_name(name, object.get("namespace").and_then(Json::as_str), namespace);
                    let inner_namespace = qualified.rsplit_once('.').map_or("", |(space, _)| space);
                    out.push_str("{\"name\":");
                    push_quoted(out, &qualified);
                    out.push_str(",\"type\":");
                    push_quoted(out, kind);
                    match kind.as_str() {
                        "enum" => {
                            let symbols =
                                object.get("symbols").and_then(Json::as_array).ok_or("enum without symbols")?;
                            out.push_str(",\"symbols\":[");
                            for (position, symbol) in symbols.iter().enumerate() {
                                if position > 0 {
                                    out.push(',');
                                }
                                push_quoted(out, symbol.as_str().ok_or("enum symbol is not a string")?);
                            }
                            out.push(']');
                        }
                        "fixed" => {
                            let size = object.get("size").and_then(Json::as_u64).ok_or("fixed without a size")?;
                            out.push_str(&format!(",\"size\":{size}"));
                        }
                        _ => {
                            let fields =
                                object.get("fields").and_then(Json::as_array).ok_or("record without fields")?;
                            out.push_str(",\"fields\":[");
                            for (position, field) in fields.iter().enumerate() {
                                if position > 0 {
                                    out.push(',');
                                }
                                let field_name =
                                    field.get("name").and_then(Json::as_str).ok_or("field without a name")?;
                                let field_type = field.get("type").ok_or("field without a type")?;
                                out.push_str("{\"name\":");
                                push_quoted(out, field_name);
                                out.push_str(",\"type\":");
                                write_canonical(field_type, inner_namespace, out)?;
                                out.push('}');
                            }
                            out.push(']');
                        }
                    }
                    out.push('}');
                }
                "array" => {
                    out.push_str("{\"type\":\"array\",\"items\":");
                    write_canonical(object.get("items").ok_or("array without items")?, namespace, out)?;
                    out.push('}');
                }
                "map" => {
                    out.push_str("{\"type\":\"map\",\"values\":");
                    write_canonical(object.get("values").ok_or("map without values")?, namespace, out)?;
                    out.push('}');
                }
                // A primitive, possibly with a logical type: its simple form.
                primitive if PRIMITIVES.contains(&primitive) => push_quoted(out, primitive),
                // {"type": "SomeName"}: a reference to a named type.
                reference => push_quoted(out, &full_name(reference, None, namespace)),
            }
        }
        other => return Err(format!("not a schema: {other}")),
    }
    Ok(())
}

fn full_name(name: &str, namespace: Option<&str>, enclosing: &str) -> String {
    if name.contains('.') {
        return name.to_owned();
    }
    match namespace.unwrap_or(enclosing) {
        "" => name.to_owned(),
        space => format!("{space}.{name}"),
    }
}

/// Names and symbols are `[A-Za-z_][A-Za-z0-9_]*`, so nothing needs escaping.
fn push_quoted(out: &mut String, text: &str) {
    out.push('"');
    out.push_str(text);
    out.push('"');
}

const RABIN_EMPTY: u64 = 0xc15d_213a_a4d7_a795;

const RABIN_TABLE: [u64; 256] = {
    let mut table = [0u64; 256];
    let mut index = 0;
    while index < 256 {
        let mut fp = index as u64;
        let mut bit = 0;
        while bit < 8 {
            fp = (fp >> 1) ^ (RABIN_EMPTY & (fp & 1).wrapping_neg());
            bit += 1;
        }
        table[index] = fp;
        index += 1;
    }
    table
};

/// CRC-64-AVRO, as the 8 little-endian bytes single-object encoding uses.
pub(super) fn rabin(data: &[u8]) -> [u8; 8] {
    let mut fp = RABIN_EMPTY;
    for byte in data {
        fp = (fp >> 8) ^ RABIN_TABLE[((fp ^ u64::from(*byte)) & 0xff) as usize];
    }
    fp.to_le_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        super::super::hex(bytes)
    }

    #[test]
    fn rabin_matches_reference_values() {
        // From fastavro's CRC-64-AVRO; "int" is the spec's 0x7275d51a3f395c8f in little-endian.
        assert_eq!(hex(&rabin(b"")), "95a7d7a43a215dc1");
        assert_eq!(hex(&rabin(b"\"null\"")), "8a8f25cce724dd63");
        assert_eq!(hex(&rabin(b"\"int\"")), "8f5c393f1ad57572");
        assert_eq!(hex(&rabin(br#"{"type":"fixed","name":"x.y","size":4}"#)), "8674aacc6ccbb449");
    }

    #[test]
    fn canonical_form_follows_the_specification() {
        let cases = [
            (r#"{"type": "long", "logicalType": "timestamp-micros"}"#, r#""long""#),
            (r#"{"type": "string"}"#, r#""string""#),
            (r#"["null", {"type": "string", "logicalType": "uuid"}]"#, r#"["null","string"]"#),
            (r#"{"type": "map", "values": "int", "doc": "x"}"#, r#"{"type":"map","values":"int"}"#),
            (r#"{"type": "array", "items": "long"}"#, r#"{"type":"array","items":"long"}"#),
            (
                r#"{"type": "fixed", "size": 4, "name": "y", "namespace": "x"}"#,
                r#"{"name":"x.y","type":"fixed","size":4}"#,
            ),
            (
                r#"{"type": "enum", "name": "E", "symbols": ["A", "B"], "default": "A"}"#,
                r#"{"name":"E","type":"enum","symbols":["A","B"]}"#,
            ),
            (
                r#"{"namespace": "a", "type": "record", "name": "R", "aliases": ["Q"], "fields": [
                    {"name": "f", "doc": "d", "default": null, "type": ["null", {"type": "record", "name": "S", "fields": []}]},
                    {"name": "g", "type": "S"},
                    {"name": "h", "type": {"type": "record", "name": "b.T", "fields": [{"name": "i", "type": "U"}]}}
                ]}"#,
                r#"{"name":"a.R","type":"record","fields":[{"name":"f","type":["null",{"name":"a.S","type":"record","fields":[]}]},{"name":"g","type":"a.S"},{"name":"h","type":{"name":"b.T","type":"record","fields":[{"name":"i","type":"b.U"}]}}]}"#,
            ),
        ];
        for (schema, expected) in cases {
            assert_eq!(parsing_canonical_form(schema).unwrap(), expected, "{schema}");
        }
    }
}
