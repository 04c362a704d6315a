//! The encodings of the fields: a form (a POST body or a GET query) or one JSON object.

use std::panic::{AssertUnwindSafe, catch_unwind};

use serde::ser::{Serialize, SerializeMap, Serializer};

use crate::wire::Method;
use crate::wire::fields::{FieldSource, Fields, MapRecord, RecordView, Statics};
use crate::wire::record::Captured;

/// How the fields travel, chosen once at build time: a method and a body format together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Encoding {
    /// A POST with an `application/x-www-form-urlencoded` body.
    Form,
    /// A POST with one JSON object, every value a string.
    Json,
    /// A GET: the fields as the query, after `prefix` (the url, then `?`, or `&` when the url
    /// already holds a `?`).
    Query { prefix: String },
}

impl Encoding {
    pub(crate) fn method(&self) -> Method {
        match self {
            Encoding::Form | Encoding::Json => Method::Post,
            Encoding::Query { .. } => Method::Get,
        }
    }

    /// The body's `Content-Type`; a GET has no body.
    pub(crate) fn content_type(&self) -> Option<&'static str> {
        match self {
            Encoding::Form => Some("application/x-www-form-urlencoded"),
            Encoding::Json => Some("application/json"),
            Encoding::Query { .. } => None,
        }
    }

    /// Writes what the transport sends for these fields into `out`: the body of a POST, the
    /// target of a GET.
    pub(crate) fn encode(&self, fields: &dyn FieldSource, out: &mut Vec<u8>) {
        out.clear();
        let form = |prefix: &str, out: &mut Vec<u8>| {
            // The buffer's allocation goes through a String and back, not copied.
            let mut text = String::from_utf8(std::mem::take(out)).unwrap_or_default();
            text.push_str(prefix);
            encode_form(fields, &mut text);
            *out = text.into_bytes();
        };
        match self {
            Encoding::Form => form("", out),
            Encoding::Query { prefix } => form(prefix, out),
            Encoding::Json => encode_json(fields, out),
        }
    }
}

/// Encodes `rec` into `out` as `encoding` says, through the `map_record` hook if there is one.
pub(crate) fn prepare(
    encoding: &Encoding,
    statics: &Statics,
    map_record: Option<&MapRecord>,
    rec: &Captured,
    out: &mut Vec<u8>,
) -> Result<(), String> {
    let view = RecordView { rec, statics };
    let Some(map) = map_record else {
        encoding.encode(&view, out);
        return Ok(());
    };
    let mut fields = Fields::collect(&view);
    catch_unwind(AssertUnwindSafe(|| map(&mut fields)))
        .map_err(|_| "the map_record hook panicked".to_owned())?;
    encoding.encode(&fields, out);
    Ok(())
}

/// How a record's fields are kept in the spool: as a form (what a POST or a GET sends) or as
/// one JSON object. A record is replayed with the encoding of the logger that replays it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stored {
    Form,
    Json,
}

impl Stored {
    /// Its number in a spool file.
    pub(crate) fn tag(self) -> u8 {
        match self {
            Stored::Form => 0,
            Stored::Json => 1,
        }
    }

    pub(crate) fn from_tag(tag: u8) -> Option<Stored> {
        match tag {
            0 => Some(Stored::Form),
            1 => Some(Stored::Json),
            _ => None,
        }
    }

    /// The encoding that writes fields kept this way.
    pub(crate) fn encoding(self) -> Encoding {
        match self {
            Stored::Form => Encoding::Form,
            Stored::Json => Encoding::Json,
        }
    }
}

impl Encoding {
    /// How this encoding's fields are kept in the spool (a GET's without its url).
    pub(crate) fn stored(&self) -> Stored {
        match self {
            Encoding::Form | Encoding::Query { .. } => Stored::Form,
            Encoding::Json => Stored::Json,
        }
    }

    /// Writes what the transport sends for fields kept as `stored` says into `out`: as they
    /// are when they were kept this encoding's way, else read back and encoded again. Fails
    /// only on kept JSON that is not one object of strings.
    pub(crate) fn encode_stored(
        &self,
        stored: Stored,
        kept: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), String> {
        out.clear();
        match (stored, self) {
            (Stored::Form, Encoding::Form) | (Stored::Json, Encoding::Json) => {
                out.extend_from_slice(kept);
            }
            (Stored::Form, Encoding::Query { prefix }) => {
                out.extend_from_slice(prefix.as_bytes());
                out.extend_from_slice(kept);
            }
            (Stored::Form, Encoding::Json) => {
                let fields: Fields = form_urlencoded::parse(kept).into_owned().collect();
                self.encode(&fields, out);
            }
            (Stored::Json, Encoding::Form | Encoding::Query { .. }) => {
                let fields = json_fields(kept)?;
                self.encode(&fields, out);
            }
        }
        Ok(())
    }
}

/// The fields of one JSON object of strings, in order.
fn json_fields(json: &[u8]) -> Result<Fields, String> {
    struct Pairs(Vec<(String, String)>);
    impl<'de> serde::Deserialize<'de> for Pairs {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Pairs, D::Error> {
            struct Visit;
            impl<'de> serde::de::Visitor<'de> for Visit {
                type Value = Pairs;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("an object of strings")
                }
                fn visit_map<A: serde::de::MapAccess<'de>>(
                    self,
                    mut map: A,
                ) -> Result<Pairs, A::Error> {
                    let mut pairs = Vec::new();
                    while let Some(pair) = map.next_entry::<String, String>()? {
                        pairs.push(pair);
                    }
                    Ok(Pairs(pairs))
                }
            }
            d.deserialize_map(Visit)
        }
    }
    serde_json::from_slice::<Pairs>(json)
        .map(|pairs| pairs.0.into_iter().collect())
        .map_err(|e| format!("a spooled record is not a JSON object of strings: {e}"))
}

/// Fields serialized as one map, in order.
struct AsMap<'a>(&'a dyn FieldSource);

impl Serialize for AsMap<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        let mut result = Ok(());
        self.0.for_each_field(&mut |key, value| {
            if result.is_ok() {
                result = map.serialize_entry(key, value);
            }
        });
        result?;
        map.end()
    }
}

/// Appends the fields, form-urlencoded, to `out`, right after what it holds.
pub(crate) fn encode_form(source: &dyn FieldSource, out: &mut String) {
    let start = out.len();
    let mut form = form_urlencoded::Serializer::for_suffix(out, start);
    source.for_each_field(&mut |key, value| {
        form.append_pair(key, value);
    });
    form.finish();
}

/// Writes the fields as one JSON object (every value a string) to `out`.
pub(crate) fn encode_json(source: &dyn FieldSource, out: &mut Vec<u8>) {
    out.clear();
    // Serializing string pairs into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, &AsMap(source));
}

#[cfg(test)]
mod tests {
    use log::kv;

    use super::*;
    use crate::wire::fields::RecordView;
    use crate::wire::fields::fixtures::{captured, fields, statics};

    #[test]
    fn each_encoding_writes_its_payload() {
        let kvs: &[(&str, &str)] = &[];
        let rec = captured(&kvs, None, None);
        let view = RecordView {
            rec: &rec,
            statics: &statics(),
        };
        let mut out = b"left over".to_vec();
        Encoding::Form.encode(&view, &mut out);
        assert!(out.starts_with(b"name=app%3A%3Anet&msg="), "{out:?}");
        let query = Encoding::Query {
            prefix: "/log?src=app&".into(),
        };
        query.encode(&view, &mut out);
        assert!(
            out.starts_with(b"/log?src=app&name=app%3A%3Anet&msg="),
            "{out:?}"
        );
        assert_eq!((query.method(), query.content_type()), (Method::Get, None));
        Encoding::Json.encode(&view, &mut out);
        assert!(out.starts_with(br#"{"name":"app::net""#), "{out:?}");
        assert_eq!(Encoding::Json.content_type(), Some("application/json"));
    }

    #[test]
    fn form_encoding_round_trips_special_characters() {
        let nasty =
            "h\u{e9}llo \u{4e16}\u{754c} & a=b %41 +plus ~tilde/slash \"q\" \r\n\0 \u{1F600}";
        let kvs = [("k&=", kv::Value::from(nasty))];
        let rec = captured(&kvs, Some("src/lib.rs"), Some("app"));
        let mut body = String::new();
        encode_form(
            &RecordView {
                rec: &rec,
                statics: &statics(),
            },
            &mut body,
        );
        assert!(
            body.starts_with("name=app%3A%3Anet&msg=a+x+b+3&args=%28%29&levelname=WARNING&"),
            "{body}"
        );
        let decoded: Vec<(String, String)> = form_urlencoded::parse(body.as_bytes())
            .into_owned()
            .collect();
        assert_eq!(decoded, fields(&rec, &statics()));
        assert_eq!(
            decoded.last().map(|(k, v)| (k.as_str(), v.as_str())),
            Some(("k&=", nasty))
        );
    }

    #[test]
    fn json_is_one_object_of_the_same_fields_in_order() {
        let kvs = [
            ("user", kv::Value::from("ann \"q\" \n")),
            ("name", kv::Value::from(1)),
        ];
        let rec = captured(&kvs, Some("src/lib.rs"), Some("app"));
        let view = RecordView {
            rec: &rec,
            statics: &statics(),
        };
        let mut body = Vec::new();
        encode_json(&view, &mut body);
        let text = String::from_utf8(body.clone()).unwrap();
        assert!(
            text.starts_with(r#"{"name":"app::net","msg":"a x b 3","args":"()","#),
            "{text}"
        );
        let parsed: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(&body).unwrap();
        let got: Vec<(String, String)> = parsed
            .into_iter()
            .map(|(k, v)| (k, v.as_str().unwrap().to_owned()))
            .collect();
        let mut want = fields(&rec, &statics());
        want.sort();
        let mut got_sorted = got.clone();
        got_sorted.sort();
        assert_eq!(got_sorted, want);
    }

    #[test]
    fn stored_fields_come_back_in_every_encoding_in_order() {
        let kvs = [("user", kv::Value::from("ann & \"q\" \n\u{1F980}"))];
        let rec = captured(&kvs, Some("src/lib.rs"), Some("app"));
        let view = RecordView {
            rec: &rec,
            statics: &statics(),
        };
        let query = Encoding::Query {
            prefix: "/log?".into(),
        };
        for encoding in [Encoding::Form, Encoding::Json, query.clone()] {
            let mut want = Vec::new();
            encoding.encode(&view, &mut want);
            for stored in [Stored::Form, Stored::Json] {
                let mut kept = Vec::new();
                stored.encoding().encode(&view, &mut kept);
                let mut got = b"left over".to_vec();
                encoding.encode_stored(stored, &kept, &mut got).unwrap();
                assert_eq!(
                    String::from_utf8_lossy(&got),
                    String::from_utf8_lossy(&want),
                    "{encoding:?} from {stored:?}"
                );
            }
            assert_eq!(
                Stored::from_tag(encoding.stored().tag()),
                Some(encoding.stored())
            );
        }
        assert_eq!(Stored::from_tag(7), None);
        let mut out = Vec::new();
        let bad = Encoding::Form.encode_stored(Stored::Json, b"[1,2]", &mut out);
        assert!(bad.unwrap_err().contains("not a JSON object"));
    }

    #[test]
    fn form_encoding_appends_after_a_query() {
        let kvs: &[(&str, &str)] = &[];
        let rec = captured(&kvs, None, None);
        let view = RecordView {
            rec: &rec,
            statics: &statics(),
        };
        let mut url = String::from("http://h/log?src=app&");
        encode_form(&view, &mut url);
        assert!(
            url.starts_with("http://h/log?src=app&name=app%3A%3Anet&msg="),
            "{url}"
        );
        let mut url = String::from("http://h/log?");
        encode_form(&view, &mut url);
        assert!(url.starts_with("http://h/log?name="), "{url}");
    }
}
