//! E-mailed extractions: an `extraction` with Keen's `email` runs in the caller's scope like any other,
//! and its events are sent as an attachment — CSV by default, or the JSON array with `content_type:
//! application/json`, gzip-compressed with `content_encoding: gzip` — through the mail server of
//! `--smtp-url` (lettre's SMTP transport). The answer is Keen's: `{"result": "Processing. Check the
//! specified email for the extraction results."}`. Without `--smtp-url` such an extraction is refused with
//! 400 naming the option.
//!
//! Design: Keen ran e-mailed extractions as background jobs. Keyhole checks the recipient, runs the
//! extraction and hands the mail to the mail server before answering, so a query error or a mail server
//! that refuses the message is told to the caller (502 `MailDeliveryError`) instead of being lost; the
//! extraction is bounded as a synchronous one is (`MAX_EXTRACTED_EVENTS`, the query's memory and time),
//! the attachment is encoded (and compressed) on the write pool, the server's bounded CPU pool, not on an
//! async worker, and the send is bounded by [`SEND_TIMEOUT`]. The CSV has one column per property path (nested objects flattened to dotted paths,
//! sorted), a string cell as its text and any other value as its JSON.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use keyhole_model::query::EmailDelivery;
use lettre::message::header::ContentType;
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde_json::{Map, Value, json};

use crate::AppState;
use crate::errors::{ApiError, ErrorCode};

/// How long handing one mail to the mail server may take.
pub(crate) const SEND_TIMEOUT: Duration = Duration::from_secs(30);

/// Keen's answer to an e-mailed extraction.
const PROCESSING: &str = "Processing. Check the specified email for the extraction results.";

/// The mail server e-mailed extractions go through.
#[derive(Clone)]
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold a password: only the sender is shown.
        formatter
            .debug_struct("Mailer")
            .field("from", &self.from.to_string())
            .finish_non_exhaustive()
    }
}

impl Mailer {
    /// A mailer for `smtp_url` (`smtp://`, `smtps://`, optionally `user:password@`) sending from `from`.
    pub fn new(smtp_url: &str, from: &str) -> Result<Mailer, String> {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(smtp_url)
            .map_err(|error| format!("--smtp-url is not a usable mail server URL: {error}"))?
            .timeout(Some(SEND_TIMEOUT))
            .build();
        let from = from
            .parse::<Mailbox>()
            .map_err(|error| format!("--smtp-from is not an e-mail address: {error}"))?;
        Ok(Mailer { transport, from })
    }

    /// Sends `file`, the `events` extracted from `collection`, to `to`.
    async fn send_extraction(
        &self,
        to: Mailbox,
        collection: &str,
        events: usize,
        file: ExtractionFile,
    ) -> Result<(), ApiError> {
        let text = format!(
            "The {events} events of the collection '{collection}' that your extraction selected are attached ({}).\n",
            file.name
        );
        let attachment = Attachment::new(file.name).body(file.bytes, file.content_type);
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(format!(
                "Keyhole extraction of '{collection}': {events} events"
            ))
            .multipart(
                MultiPart::mixed()
                    .singlepart(SinglePart::plain(text))
                    .singlepart(attachment),
            )
            .map_err(|error| {
                ApiError::internal(format!("cannot build the extraction mail: {error}"))
            })?;
        if let Err(error) = self.transport.send(message).await {
            tracing::warn!(%error, collection, "the mail server did not take an extraction mail");
            return Err(ApiError::new(
                ErrorCode::MailDelivery,
                "The mail server did not accept the extraction mail; try again later or extract without email.",
            ));
        }
        tracing::info!(collection, events, "extraction e-mailed");
        Ok(())
    }
}

/// An e-mailed extraction, checked before its query runs: the mail server to send it through and the
/// recipient, as the mailer reads the address.
pub(crate) struct Delivery {
    mailer: Mailer,
    to: Mailbox,
    json: bool,
    gzip: bool,
}

impl Delivery {
    /// The delivery `asked` for on this server; refused without `--smtp-url` or for an address the
    /// mailer cannot read.
    pub(crate) fn check(state: &AppState, asked: &EmailDelivery) -> Result<Delivery, ApiError> {
        let mailer = state.mailer.clone().ok_or_else(|| {
            ApiError::new(
                ErrorCode::InvalidParameter,
                "E-mailed extractions need a mail server: start keyhole serve with --smtp-url (KEYHOLE_SMTP_URL). Omit email to extract synchronously.",
            )
        })?;
        let to = asked.to.parse::<Mailbox>().map_err(|_| {
            ApiError::new(
                ErrorCode::InvalidParameter,
                "email must be one e-mail address (name@example.com).",
            )
        })?;
        Ok(Delivery {
            mailer,
            to,
            json: asked.json,
            gzip: asked.gzip,
        })
    }

    /// Mails the events of `answer` (an extraction's body) from `collection`, encoded on the write pool;
    /// returns Keen's answer.
    pub(crate) async fn send(
        self,
        state: &AppState,
        collection: String,
        answer: Value,
    ) -> Result<Value, ApiError> {
        let (json, gzip) = (self.json, self.gzip);
        let encoded_for = collection.clone();
        let (file, events) = state
            .write_pool
            .run(move |_| {
                let events = answer["result"].as_array().map_or(&[][..], Vec::as_slice);
                extraction_file(&encoded_for, events, json, gzip).map(|file| (file, events.len()))
            })
            .await??;
        self.mailer
            .send_extraction(self.to, &collection, events, file)
            .await?;
        Ok(json!({ "result": PROCESSING }))
    }
}

/// An extraction's events as an attachment.
struct ExtractionFile {
    name: String,
    content_type: ContentType,
    bytes: Vec<u8>,
}

/// The attachment of `events` extracted from `collection`: CSV or JSON, gzip-compressed or not.
fn extraction_file(
    collection: &str,
    events: &[Value],
    json: bool,
    gzip: bool,
) -> Result<ExtractionFile, ApiError> {
    let (extension, media_type, bytes) = if json {
        let bytes = serde_json::to_vec(events)
            .map_err(|error| ApiError::internal(format!("cannot encode an extraction: {error}")))?;
        ("json", "application/json", bytes)
    } else {
        ("csv", "text/csv; charset=utf-8", csv_of(events)?)
    };
    let stem: String = collection
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(100)
        .collect();
    if !gzip {
        return Ok(ExtractionFile {
            name: format!("{stem}-extraction.{extension}"),
            content_type: ContentType::parse(media_type).expect("a valid media type"),
            bytes,
        });
    }
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let compressed = encoder
        .write_all(&bytes)
        .and_then(|()| encoder.finish())
        .map_err(|error| ApiError::internal(format!("cannot compress an extraction: {error}")))?;
    Ok(ExtractionFile {
        name: format!("{stem}-extraction.{extension}.gz"),
        content_type: ContentType::parse("application/gzip").expect("a valid media type"),
        bytes: compressed,
    })
}

/// `events` as CSV: a header of every property path, then one row per event.
fn csv_of(events: &[Value]) -> Result<Vec<u8>, ApiError> {
    let rows: Vec<BTreeMap<String, String>> = events
        .iter()
        .map(|event| {
            let mut cells = BTreeMap::new();
            if let Value::Object(fields) = event {
                flatten_into(&mut cells, "", fields);
            }
            cells
        })
        .collect();
    let mut columns: Vec<&String> = rows.iter().flat_map(BTreeMap::keys).collect();
    columns.sort();
    columns.dedup();
    let failed = |error: csv::Error| {
        ApiError::internal(format!("cannot write an extraction's CSV: {error}"))
    };
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer.write_record(&columns).map_err(failed)?;
    for row in &rows {
        let cells = columns
            .iter()
            .map(|column| row.get(*column).map_or("", String::as_str));
        writer.write_record(cells).map_err(failed)?;
    }
    writer
        .into_inner()
        .map_err(|error| ApiError::internal(format!("cannot write an extraction's CSV: {error}")))
}

fn flatten_into(cells: &mut BTreeMap<String, String>, prefix: &str, fields: &Map<String, Value>) {
    for (name, value) in fields {
        let path = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}.{name}")
        };
        match value {
            Value::Object(inner) if !inner.is_empty() => flatten_into(cells, &path, inner),
            Value::String(text) => {
                cells.insert(path, text.clone());
            }
            Value::Null => {
                cells.insert(path, String::new());
            }
            other => {
                cells.insert(path, other.to_string());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_columns_are_every_flattened_path_and_cells_keep_text_raw() {
        let events = vec![
            json!({"user": {"id": 7, "name": "Ann, \"A\""}, "tags": ["a", "b"], "keen": {"timestamp": "2026-01-01T00:00:00.000Z"}}),
            json!({"user": {"id": "7"}, "paid": true, "empty": {}, "gone": null}),
        ];
        let csv = String::from_utf8(csv_of(&events).unwrap()).unwrap();
        assert_eq!(
            csv,
            "empty,gone,keen.timestamp,paid,tags,user.id,user.name\n\
             ,,2026-01-01T00:00:00.000Z,,\"[\"\"a\"\",\"\"b\"\"]\",7,\"Ann, \"\"A\"\"\"\n\
             {},,,true,,7,\n"
        );
    }

    #[test]
    fn attachments_are_named_after_the_collection_and_gzip_round_trips() {
        let events = vec![json!({"n": 1})];
        let file = extraction_file("page views/ü", &events, true, true).unwrap();
        assert_eq!(file.name, "page_views__-extraction.json.gz");
        let mut decoded = String::new();
        std::io::Read::read_to_string(
            &mut flate2::read::GzDecoder::new(&file.bytes[..]),
            &mut decoded,
        )
        .unwrap();
        assert_eq!(decoded, r#"[{"n":1}]"#);
        assert!(Mailer::new("smtp://127.0.0.1:2525", "Keyhole <keyhole@localhost>").is_ok());
        assert!(Mailer::new("ftp://example.com", "keyhole@localhost").is_err());
        assert!(Mailer::new("smtp://127.0.0.1:2525", "not an address").is_err());
    }
}
