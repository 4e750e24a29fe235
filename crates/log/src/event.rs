//! [`EventWriter`]: TensorBoard `events.out.tfevents.*` files.
//!
//! Length: about 500 lines of code (framing, CRC, the protobuf messages, the
//! writer); the rest are tests.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use prost::Message;

use crate::proto::{
    event, h_params_plugin_data, session_log, summary, summary_metadata, tensor_shape_proto, value,
    DataType, Event, Experiment, HParamDataType, HParamInfo, HParamsPluginData, HistogramProto,
    MetricInfo, MetricName, SessionEndInfo, SessionLog, SessionStartInfo, Status, Summary,
    SummaryMetadata, TensorProto, TensorShapeProto, Value,
};
use crate::{io_err, record, unix_now, LogError, Result};

/// Version string TensorBoard expects in the first record of a file.
const FILE_VERSION: &str = "brain.Event:2";
/// Tags and plugin name used by TensorBoard's own hparams summary API.
const HPARAMS_PLUGIN: &str = "hparams";
const EXPERIMENT_TAG: &str = "_hparams_/experiment";
const SESSION_START_TAG: &str = "_hparams_/session_start_info";
const SESSION_END_TAG: &str = "_hparams_/session_end_info";
const TEXT_PLUGIN: &str = "text";

/// A hyperparameter value as the hparams plugin understands it.
#[derive(Clone, Debug, PartialEq)]
pub enum HParamValue {
    String(String),
    Number(f64),
    Bool(bool),
}

impl From<&str> for HParamValue {
    fn from(s: &str) -> Self {
        Self::String(s.to_owned())
    }
}

impl From<String> for HParamValue {
    fn from(s: String) -> Self {
        Self::String(s)
    }
}

impl From<f64> for HParamValue {
    fn from(x: f64) -> Self {
        Self::Number(x)
    }
}

impl From<i64> for HParamValue {
    fn from(x: i64) -> Self {
        // Precision loss above 2^53 is inherent: the plugin stores doubles.
        Self::Number(x as f64)
    }
}

impl From<bool> for HParamValue {
    fn from(b: bool) -> Self {
        Self::Bool(b)
    }
}

impl HParamValue {
    fn to_proto(&self) -> (Value, HParamDataType) {
        let (kind, ty) = match self {
            Self::String(s) => (value::Kind::StringValue(s.clone()), HParamDataType::String),
            Self::Number(x) => (value::Kind::NumberValue(*x), HParamDataType::Float64),
            Self::Bool(b) => (value::Kind::BoolValue(*b), HParamDataType::Bool),
        };
        (Value { kind: Some(kind) }, ty)
    }
}

/// How a training session ended, for [`EventWriter::add_session_end`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionStatus {
    Success,
    Failure,
    Running,
}

/// Writes one TensorBoard event file. Each `add_*` call writes its complete
/// record with a single `write` to an unbuffered file before returning, so the
/// file is readable at any moment even if the process is killed.
#[derive(Debug)]
pub struct EventWriter {
    file: File,
    path: PathBuf,
    /// The kind each tag was first written as: TensorBoard shows a tag
    /// under one plugin only, so a tag written both as a scalar and as a
    /// histogram would hide one of them. Writing it as a second kind is
    /// refused.
    kinds: BTreeMap<String, &'static str>,
}

impl EventWriter {
    /// Creates `dir` if needed and a new `events.out.tfevents.<secs>.<host>`
    /// in it (with a `.N` suffix if that name is taken, so an existing file is
    /// never truncated), then writes the file-version record.
    pub fn create(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        fs::create_dir_all(dir).map_err(io_err("create directory", dir))?;
        let secs = unix_now() as u64;
        let base = format!("events.out.tfevents.{secs:010}.{}", hostname());
        let (file, path) = create_unique(dir, &base)?;
        let mut writer = Self {
            file,
            path,
            kinds: BTreeMap::new(),
        };
        writer.write_event(&Event {
            wall_time: unix_now(),
            step: 0,
            what: Some(event::What::FileVersion(FILE_VERSION.to_owned())),
        })?;
        Ok(writer)
    }

    /// Path of the event file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Frames and writes an arbitrary event (escape hatch for summary kinds
    /// without a helper).
    pub fn write_event(&mut self, event: &Event) -> Result<()> {
        let bytes = record::frame(&event.encode_to_vec());
        self.file
            .write_all(&bytes)
            .map_err(io_err("write event to", &self.path))
    }

    /// Writes a scalar as `simple_value`. TensorBoard stores these as `f32`,
    /// so `value` is rounded to single precision.
    pub fn add_scalar(&mut self, tag: &str, value: f64, step: i64) -> Result<()> {
        self.claim(tag, "scalar")?;
        self.add_value(
            step,
            summary::Value {
                tag: tag.to_owned(),
                value: Some(summary::value::Value::SimpleValue(value as f32)),
                ..Default::default()
            },
        )
    }

    /// Writes a histogram of `values` with TensorFlow's default exponential
    /// buckets. Non-finite values are skipped (they would poison min/max/sum).
    pub fn add_histogram(&mut self, tag: &str, values: &[f64], step: i64) -> Result<()> {
        self.claim(tag, "histogram")?;
        self.add_value(
            step,
            summary::Value {
                tag: tag.to_owned(),
                value: Some(summary::value::Value::Histo(histogram(values))),
                ..Default::default()
            },
        )
    }

    /// Writes markdown text for the text plugin: a scalar `DT_STRING` tensor.
    pub fn add_text(&mut self, tag: &str, markdown: &str, step: i64) -> Result<()> {
        self.claim(tag, "text")?;
        let tensor = TensorProto {
            dtype: DataType::DtString as i32,
            // Rank 0, as TensorBoard's own `text` summary writes a single string.
            tensor_shape: Some(TensorShapeProto::default()),
            string_val: vec![markdown.as_bytes().to_vec()],
            ..Default::default()
        };
        self.add_value(
            step,
            summary::Value {
                tag: tag.to_owned(),
                metadata: Some(plugin_metadata(TEXT_PLUGIN, Vec::new())),
                value: Some(summary::value::Value::Tensor(tensor)),
                ..Default::default()
            },
        )
    }

    /// Renders `rows` as a two-column markdown table (like CleanRL's
    /// "hyperparameters" text) and writes it as text with tag `title`, step 0.
    pub fn add_config_table<K, V>(&mut self, title: &str, rows: &[(K, V)]) -> Result<()>
    where
        K: AsRef<str>,
        V: AsRef<str>,
    {
        self.add_text(title, &config_table_markdown(rows), 0)
    }

    /// Registers this run with the hparams plugin: writes an experiment
    /// summary (one `HParamInfo` per hparam, one `MetricInfo` per metric tag)
    /// and a session-start summary holding the values, as TensorBoard's
    /// `hparams` API does. `metrics` are tags of scalars logged with
    /// [`add_scalar`](Self::add_scalar) in this same run.
    pub fn add_hparams(
        &mut self,
        hparams: &[(String, HParamValue)],
        metrics: &[String],
    ) -> Result<()> {
        let now = unix_now();
        let mut values = BTreeMap::new();
        let mut infos = Vec::with_capacity(hparams.len());
        for (name, v) in hparams {
            let (value, ty) = v.to_proto();
            // A map cannot hold both; refuse rather than silently drop one.
            if values.insert(name.clone(), value).is_some() {
                return Err(LogError::Invalid(format!("duplicate hparam name {name:?}")));
            }
            infos.push(HParamInfo {
                name: name.clone(),
                r#type: ty as i32,
                ..Default::default()
            });
        }
        let metric_infos = metrics
            .iter()
            .map(|tag| MetricInfo {
                name: Some(MetricName {
                    group: String::new(),
                    tag: tag.clone(),
                }),
                ..Default::default()
            })
            .collect();
        let experiment = Experiment {
            time_created_secs: now,
            hparam_infos: infos,
            metric_infos,
            ..Default::default()
        };
        self.add_hparams_data(
            EXPERIMENT_TAG,
            h_params_plugin_data::Data::Experiment(experiment),
        )?;
        let start = SessionStartInfo {
            hparams: values,
            start_time_secs: now,
            ..Default::default()
        };
        self.add_hparams_data(
            SESSION_START_TAG,
            h_params_plugin_data::Data::SessionStartInfo(start),
        )
    }

    /// Marks the hparams session as ended (optional; TensorBoard shows the
    /// status in the HPARAMS table).
    pub fn add_session_end(&mut self, status: SessionStatus) -> Result<()> {
        let status = match status {
            SessionStatus::Success => Status::Success,
            SessionStatus::Failure => Status::Failure,
            SessionStatus::Running => Status::Running,
        };
        let end = SessionEndInfo {
            status: status as i32,
            end_time_secs: unix_now(),
        };
        self.add_hparams_data(
            SESSION_END_TAG,
            h_params_plugin_data::Data::SessionEndInfo(end),
        )
    }

    /// Marks a restart at `step`: TensorBoard discards what earlier event files
    /// of the directory logged at `step` or later, so a run resumed from a
    /// checkpoint shows one history without the steps a killed process logged
    /// past it.
    pub fn add_session_start(&mut self, step: i64) -> Result<()> {
        self.write_event(&Event {
            wall_time: unix_now(),
            step,
            what: Some(event::What::SessionLog(SessionLog {
                status: session_log::SessionStatus::Start as i32,
                ..Default::default()
            })),
        })
    }

    /// Records are already handed to the OS on every call; this exists for
    /// API symmetry and flushes nothing but the (empty) user-space buffer.
    pub fn flush(&mut self) -> Result<()> {
        self.file.flush().map_err(io_err("flush", &self.path))
    }

    /// Forces written records to stable storage (fsync), for callers that
    /// must survive a power loss, not just a process kill.
    pub fn sync(&mut self) -> Result<()> {
        self.file.sync_data().map_err(io_err("sync", &self.path))
    }

    /// Records that `tag` holds `kind`; an error when it already holds
    /// another kind.
    fn claim(&mut self, tag: &str, kind: &'static str) -> Result<()> {
        match self.kinds.get(tag) {
            Some(&first) if first != kind => Err(LogError::Invalid(format!(
                "tag `{tag}` was written as a {first}; TensorBoard would hide it as a {kind} \
                 (use a distinct tag)"
            ))),
            Some(_) => Ok(()),
            None => {
                self.kinds.insert(tag.to_owned(), kind);
                Ok(())
            }
        }
    }

    fn add_value(&mut self, step: i64, value: summary::Value) -> Result<()> {
        self.write_event(&Event {
            wall_time: unix_now(),
            step,
            what: Some(event::What::Summary(Summary { value: vec![value] })),
        })
    }

    fn add_hparams_data(&mut self, tag: &str, data: h_params_plugin_data::Data) -> Result<()> {
        // version stays 0: the only plugin-data version TensorBoard accepts.
        let content = HParamsPluginData {
            version: 0,
            data: Some(data),
        }
        .encode_to_vec();
        self.add_value(
            0,
            summary::Value {
                tag: tag.to_owned(),
                metadata: Some(plugin_metadata(HPARAMS_PLUGIN, content)),
                value: Some(summary::value::Value::Tensor(null_tensor())),
                ..Default::default()
            },
        )
    }
}

/// Opens `dir/base` (or `dir/base.N`) with `create_new`, so concurrent
/// writers in one directory never share or clobber a file.
fn create_unique(dir: &Path, base: &str) -> Result<(File, PathBuf)> {
    let mut last_err = None;
    for n in 0..1000u32 {
        let name = if n == 0 {
            base.to_owned()
        } else {
            format!("{base}.{n}")
        };
        let path = dir.join(name);
        match OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(f) => return Ok((f, path)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last_err = Some(e),
            Err(e) => return Err(io_err("create event file", &path)(e)),
        }
    }
    let source = last_err.unwrap_or_else(|| io::Error::from(io::ErrorKind::AlreadyExists));
    Err(io_err("create event file", &dir.join(base))(source))
}

/// Host name for the file name, reduced to filename-safe characters.
fn hostname() -> String {
    let raw = fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| fs::read_to_string("/etc/hostname"))
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .unwrap_or_default();
    let clean: String = raw
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if clean.is_empty() {
        "localhost".to_owned()
    } else {
        clean
    }
}

fn plugin_metadata(plugin_name: &str, content: Vec<u8>) -> SummaryMetadata {
    SummaryMetadata {
        plugin_data: Some(summary_metadata::PluginData {
            plugin_name: plugin_name.to_owned(),
            content,
        }),
        ..Default::default()
    }
}

/// The empty float tensor of shape `[0]` that hparams summaries carry; their
/// payload lives in the metadata.
fn null_tensor() -> TensorProto {
    TensorProto {
        dtype: DataType::DtFloat as i32,
        tensor_shape: Some(TensorShapeProto {
            dim: vec![tensor_shape_proto::Dim::default()],
            unknown_rank: false,
        }),
        ..Default::default()
    }
}

/// Markdown for [`EventWriter::add_config_table`]. Pipes are escaped and
/// newlines flattened so a cell cannot break the table.
fn config_table_markdown<K: AsRef<str>, V: AsRef<str>>(rows: &[(K, V)]) -> String {
    let cell = |s: &str| s.replace('|', "\\|").replace(['\r', '\n'], " ");
    let mut md = String::from("|param|value|\n|-|-|\n");
    for (k, v) in rows {
        md.push_str(&format!("|{}|{}|\n", cell(k.as_ref()), cell(v.as_ref())));
    }
    md
}

/// TensorFlow's default histogram edges: `±1e-12 · 1.1^k` up to 1e20, zero,
/// and `±f64::MAX` at the ends. Each edge is the exclusive upper limit of its
/// bucket.
fn default_bucket_limits() -> &'static [f64] {
    static LIMITS: OnceLock<Vec<f64>> = OnceLock::new();
    LIMITS.get_or_init(|| {
        let mut pos = Vec::new();
        let mut v = 1e-12;
        while v < 1e20 {
            pos.push(v);
            v *= 1.1;
        }
        pos.push(f64::MAX);
        let mut limits: Vec<f64> = pos.iter().rev().map(|x| -x).collect();
        limits.push(0.0);
        limits.extend_from_slice(&pos);
        limits
    })
}

/// Builds the histogram proto. Interior runs of empty buckets are merged into
/// one empty bucket ending at the run's last edge (as TensorFlow does), which
/// keeps every edge correct while keeping the record small.
fn histogram(values: &[f64]) -> HistogramProto {
    let limits = default_bucket_limits();
    let mut counts = vec![0.0f64; limits.len()];
    let (mut min, mut max) = (f64::INFINITY, f64::NEG_INFINITY);
    let (mut num, mut sum, mut sum_squares) = (0.0, 0.0, 0.0);
    for &x in values.iter().filter(|x| x.is_finite()) {
        // First edge strictly above x; f64::MAX itself lands in the last bucket.
        let idx = limits.partition_point(|&l| l <= x).min(limits.len() - 1);
        counts[idx] += 1.0;
        min = min.min(x);
        max = max.max(x);
        num += 1.0;
        sum += x;
        sum_squares += x * x;
    }
    if num == 0.0 {
        // Still a valid, readable histogram: one empty bucket.
        return HistogramProto {
            bucket_limit: vec![f64::MAX],
            bucket: vec![0.0],
            ..Default::default()
        };
    }
    let mut bucket_limit = Vec::new();
    let mut bucket = Vec::new();
    let mut i = 0;
    while i < counts.len() {
        let mut end = limits[i];
        let count = counts[i];
        i += 1;
        if count == 0.0 {
            while i < counts.len() && counts[i] == 0.0 {
                end = limits[i];
                i += 1;
            }
        }
        bucket_limit.push(end);
        bucket.push(count);
    }
    // Leading/trailing empty runs carry no information (readers take the
    // outer edges from min/max) and render as inverted zero-width bars.
    let first = bucket.iter().position(|&c| c > 0.0).unwrap_or(0);
    let last = bucket.iter().rposition(|&c| c > 0.0).unwrap_or(0);
    bucket_limit.truncate(last + 1);
    bucket.truncate(last + 1);
    bucket_limit.drain(..first);
    bucket.drain(..first);
    HistogramProto {
        min,
        max,
        num,
        sum,
        sum_squares,
        bucket_limit,
        bucket,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::tests::parse_frames;

    fn read_events(path: &Path) -> Vec<Event> {
        let bytes = fs::read(path).expect("read event file");
        parse_frames(&bytes)
            .expect("every frame complete with valid CRCs")
            .iter()
            .map(|p| Event::decode(p.as_slice()).expect("decodes as Event"))
            .collect()
    }

    fn only_value(e: &Event) -> &summary::Value {
        match &e.what {
            Some(event::What::Summary(s)) if s.value.len() == 1 => &s.value[0],
            other => panic!("expected one summary value, got {other:?}"),
        }
    }

    #[test]
    fn bucket_limits_match_tensorflow_shape() {
        let l = default_bucket_limits();
        assert!(l.windows(2).all(|w| w[0] < w[1]), "strictly increasing");
        assert_eq!(l.len() % 2, 1);
        let mid = l.len() / 2;
        assert_eq!(l[mid], 0.0);
        assert_eq!(l[mid + 1], 1e-12);
        assert_eq!(l[mid - 1], -1e-12);
        assert_eq!(l[l.len() - 1], f64::MAX);
        assert_eq!(l[0], -f64::MAX);
        // As in TensorFlow: 774 growing edges and ±DBL_MAX per sign, plus zero.
        assert_eq!(l.len(), 2 * (774 + 1) + 1);
    }

    #[test]
    fn histogram_stats_and_buckets() {
        let xs = [0.0, 1.0, 1.0, -2.5, 3.0, f64::NAN, f64::INFINITY];
        let h = histogram(&xs);
        assert_eq!(h.num, 5.0);
        assert_eq!(h.min, -2.5);
        assert_eq!(h.max, 3.0);
        assert_eq!(h.sum, 2.5);
        assert_eq!(h.sum_squares, 1.0 + 1.0 + 6.25 + 9.0);
        assert_eq!(h.bucket.iter().sum::<f64>(), 5.0);
        assert_eq!(h.bucket.len(), h.bucket_limit.len());
        assert!(h.bucket_limit.windows(2).all(|w| w[0] < w[1]));
        // Outer buckets are non-empty and their edges bracket [min, max].
        assert!(h.bucket[0] > 0.0 && h.bucket[h.bucket.len() - 1] > 0.0);
        assert!(h.bucket_limit[0] > h.min);
        assert!(h.bucket_limit[h.bucket_limit.len() - 1] > h.max);
        // 0 and 1 share no bucket; the gap between them is one empty bucket.
        assert!(h.bucket.contains(&0.0));
        // Each value sits in the bucket whose [prev_limit, limit) holds it.
        for &x in &[0.0, 1.0, -2.5, 3.0] {
            let i = h.bucket_limit.partition_point(|&l| l <= x);
            assert!(h.bucket[i] > 0.0, "value {x} has a non-empty bucket");
        }
        let empty = histogram(&[f64::NAN]);
        assert_eq!(empty.num, 0.0);
        assert_eq!(empty.bucket, vec![0.0]);
    }

    #[test]
    fn config_table_escapes_cells() {
        let md = config_table_markdown(&[("lr", "0.1"), ("a|b", "x\ny")]);
        assert_eq!(md, "|param|value|\n|-|-|\n|lr|0.1|\n|a\\|b|x y|\n");
    }

    #[test]
    fn killed_run_leaves_parseable_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut w = EventWriter::create(dir.path()).expect("create");
        let path = w.path().to_path_buf();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .expect("utf-8 name");
        assert!(name.starts_with("events.out.tfevents."), "{name}");

        let check = |expected: usize| {
            let events = read_events(&path);
            assert_eq!(events.len(), expected);
            assert_eq!(
                events[0].what,
                Some(event::What::FileVersion(FILE_VERSION.to_owned()))
            );
            events
        };
        check(1);
        w.add_scalar("loss", 0.5, 1).expect("scalar");
        let ev = check(2);
        assert_eq!(ev[1].step, 1);
        assert_eq!(
            only_value(&ev[1]).value,
            Some(summary::value::Value::SimpleValue(0.5))
        );
        w.add_histogram("q", &[1.0, 2.0], 2).expect("histogram");
        check(3);
        w.add_text("notes", "hello *world*", 3).expect("text");
        let ev = check(4);
        match &only_value(&ev[3]).value {
            Some(summary::value::Value::Tensor(t)) => {
                assert_eq!(t.string_val, vec![b"hello *world*".to_vec()]);
            }
            other => panic!("expected tensor, got {other:?}"),
        }
        w.add_config_table("hyperparameters", &[("lr", "0.1")])
            .expect("table");
        check(5);
        let hp = vec![
            ("lr".to_owned(), HParamValue::from(0.1)),
            ("env".to_owned(), HParamValue::from("grid")),
            ("social".to_owned(), HParamValue::from(true)),
        ];
        w.add_hparams(&hp, &["loss".to_owned()]).expect("hparams");
        let ev = check(7);
        let v = only_value(&ev[6]);
        assert_eq!(v.tag, SESSION_START_TAG);
        let content = &v
            .metadata
            .as_ref()
            .and_then(|m| m.plugin_data.as_ref())
            .expect("plugin data")
            .content;
        let data = HParamsPluginData::decode(content.as_slice()).expect("plugin data decodes");
        match data.data {
            Some(h_params_plugin_data::Data::SessionStartInfo(s)) => {
                assert_eq!(s.hparams.len(), 3);
                assert_eq!(s.hparams["social"].kind, Some(value::Kind::BoolValue(true)));
            }
            other => panic!("expected session start info, got {other:?}"),
        }
        w.add_session_end(SessionStatus::Success).expect("end");
        check(8);
        // `w` is deliberately still alive: nothing relied on drop.
        drop(w);
    }

    #[test]
    fn duplicate_hparams_rejected() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut w = EventWriter::create(dir.path()).expect("create");
        let hp = vec![
            ("a".to_owned(), HParamValue::Number(1.0)),
            ("a".to_owned(), HParamValue::Number(2.0)),
        ];
        assert!(matches!(w.add_hparams(&hp, &[]), Err(LogError::Invalid(_))));
    }

    #[test]
    fn same_second_writers_get_distinct_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = EventWriter::create(dir.path()).expect("first");
        let b = EventWriter::create(dir.path()).expect("second");
        assert_ne!(a.path(), b.path());
    }
}
