//! GGUF files (versions 1 to 3): header, metadata, tensor directory and
//! dequantisation of tensors into `tch` tensors.
//!
//! The parser treats the file as hostile: every length is checked against
//! the bytes that are actually there before anything is allocated, counts and
//! sizes use checked arithmetic, nested arrays are depth-limited, and every
//! tensor's data range is validated against the file at parse time.
//!
//! Length: one parser of the GGUF format (header, metadata values, tensor
//! table, bounds checks, typed metadata access) kept together because every
//! check depends on the same offsets.

use std::collections::HashMap;
use std::path::Path;

use tch::{Device, Kind, Tensor};

use crate::error::{LmError, Result};
use crate::quant::{self, GgmlType};

/// The four bytes every GGUF file starts with.
pub const GGUF_MAGIC: [u8; 4] = *b"GGUF";
/// Data alignment when the file does not set `general.alignment`.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// ggml's limit on tensor dimensions.
pub const MAX_DIMS: usize = 4;
/// How deeply arrays may nest (the spec allows arrays of arrays).
const MAX_ARRAY_DEPTH: usize = 8;

/// The type tag of a metadata value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GgufValueType {
    U8,
    I8,
    U16,
    I16,
    U32,
    I32,
    F32,
    Bool,
    String,
    Array,
    U64,
    I64,
    F64,
}

impl GgufValueType {
    fn from_id(id: u32) -> Option<Self> {
        Some(match id {
            0 => Self::U8,
            1 => Self::I8,
            2 => Self::U16,
            3 => Self::I16,
            4 => Self::U32,
            5 => Self::I32,
            6 => Self::F32,
            7 => Self::Bool,
            8 => Self::String,
            9 => Self::Array,
            10 => Self::U64,
            11 => Self::I64,
            12 => Self::F64,
            _ => return None,
        })
    }

    /// The smallest number of bytes one value of this type occupies.
    fn min_size(self, version: u32) -> u64 {
        match self {
            Self::U8 | Self::I8 | Self::Bool => 1,
            Self::U16 | Self::I16 => 2,
            Self::U32 | Self::I32 | Self::F32 => 4,
            Self::U64 | Self::I64 | Self::F64 => 8,
            // A length prefix; arrays also carry a type tag.
            Self::String => len_size(version),
            Self::Array => 4 + len_size(version),
        }
    }
}

fn len_size(version: u32) -> u64 {
    if version == 1 {
        4
    } else {
        8
    }
}

/// A metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum GgufValue {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(String),
    Array(Vec<GgufValue>),
    U64(u64),
    I64(i64),
    F64(f64),
}

impl GgufValue {
    /// The value as an unsigned integer, if it is a non-negative integer.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            GgufValue::U8(v) => Some(v as u64),
            GgufValue::U16(v) => Some(v as u64),
            GgufValue::U32(v) => Some(v as u64),
            GgufValue::U64(v) => Some(v),
            GgufValue::I8(v) => u64::try_from(v).ok(),
            GgufValue::I16(v) => u64::try_from(v).ok(),
            GgufValue::I32(v) => u64::try_from(v).ok(),
            GgufValue::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// The value as a signed integer, if it is an integer that fits.
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            GgufValue::U8(v) => Some(v as i64),
            GgufValue::U16(v) => Some(v as i64),
            GgufValue::U32(v) => Some(v as i64),
            GgufValue::U64(v) => i64::try_from(v).ok(),
            GgufValue::I8(v) => Some(v as i64),
            GgufValue::I16(v) => Some(v as i64),
            GgufValue::I32(v) => Some(v as i64),
            GgufValue::I64(v) => Some(v),
            _ => None,
        }
    }

    /// The value as a float (integers convert).
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            GgufValue::F32(v) => Some(v as f64),
            GgufValue::F64(v) => Some(v),
            _ => self.as_i64().map(|v| v as f64),
        }
    }

    /// The value as a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            GgufValue::String(s) => Some(s),
            _ => None,
        }
    }

    /// The value as a boolean.
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            GgufValue::Bool(b) => Some(b),
            _ => None,
        }
    }

    /// The value as an array.
    pub fn as_array(&self) -> Option<&[GgufValue]> {
        match self {
            GgufValue::Array(a) => Some(a),
            _ => None,
        }
    }

    /// A short description of the type, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            GgufValue::U8(_) => "u8",
            GgufValue::I8(_) => "i8",
            GgufValue::U16(_) => "u16",
            GgufValue::I16(_) => "i16",
            GgufValue::U32(_) => "u32",
            GgufValue::I32(_) => "i32",
            GgufValue::F32(_) => "f32",
            GgufValue::Bool(_) => "bool",
            GgufValue::String(_) => "string",
            GgufValue::Array(_) => "array",
            GgufValue::U64(_) => "u64",
            GgufValue::I64(_) => "i64",
            GgufValue::F64(_) => "f64",
        }
    }
}

/// One entry of the tensor directory.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    /// The tensor's name, e.g. `blk.0.attn_q.weight`.
    pub name: String,
    /// Dimensions in ggml order: `dims[0]` is the contiguous one. The torch
    /// shape is this reversed.
    pub dims: Vec<u64>,
    /// The storage type.
    pub ggml_type: GgmlType,
    /// Offset of the data relative to the start of the data section.
    pub offset: u64,
    /// Size of the data in bytes (0 for types this crate cannot size).
    pub size: u64,
}

impl TensorInfo {
    /// Number of values.
    pub fn numel(&self) -> u64 {
        self.dims.iter().product()
    }

    /// The shape in torch order (outermost first).
    pub fn torch_shape(&self) -> Vec<i64> {
        self.dims.iter().rev().map(|&d| d as i64).collect()
    }
}

/// Everything before the tensor data: version, metadata and tensor directory.
#[derive(Debug, Clone)]
pub struct GgufHeader {
    /// Format version (1, 2 or 3).
    pub version: u32,
    /// Metadata in file order.
    pub metadata: Vec<(String, GgufValue)>,
    /// Tensor directory in file order.
    pub tensors: Vec<TensorInfo>,
    /// Alignment of the data section and of every tensor in it.
    pub alignment: u64,
    /// Absolute offset of the data section in the file.
    pub data_offset: u64,
}

struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
    version: u32,
}

impl<'a> Cursor<'a> {
    fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    fn take(&mut self, n: u64, what: &str) -> std::result::Result<&'a [u8], String> {
        if n > self.remaining() as u64 {
            return Err(format!(
                "truncated: {what} needs {n} bytes at offset {} but only {} remain",
                self.pos,
                self.remaining()
            ));
        }
        let n = n as usize;
        let s = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, what: &str) -> std::result::Result<[u8; N], String> {
        let s = self.take(N as u64, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn u8(&mut self, what: &str) -> std::result::Result<u8, String> {
        Ok(self.array::<1>(what)?[0])
    }
    fn u16(&mut self, what: &str) -> std::result::Result<u16, String> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }
    fn u32(&mut self, what: &str) -> std::result::Result<u32, String> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }
    fn u64(&mut self, what: &str) -> std::result::Result<u64, String> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// A length or count: u32 in version 1, u64 later.
    fn len(&mut self, what: &str) -> std::result::Result<u64, String> {
        if self.version == 1 {
            Ok(self.u32(what)? as u64)
        } else {
            self.u64(what)
        }
    }

    fn string(&mut self, what: &str) -> std::result::Result<String, String> {
        let n = self.len(what)?;
        let raw = self.take(n, what)?;
        // Some vocabularies hold byte sequences that are not valid UTF-8;
        // keep them readable instead of rejecting the file.
        Ok(String::from_utf8_lossy(raw).into_owned())
    }

    fn value(
        &mut self,
        ty: GgufValueType,
        depth: usize,
        key: &str,
    ) -> std::result::Result<GgufValue, String> {
        Ok(match ty {
            GgufValueType::U8 => GgufValue::U8(self.u8(key)?),
            GgufValueType::I8 => GgufValue::I8(self.u8(key)? as i8),
            GgufValueType::U16 => GgufValue::U16(self.u16(key)?),
            GgufValueType::I16 => GgufValue::I16(self.u16(key)? as i16),
            GgufValueType::U32 => GgufValue::U32(self.u32(key)?),
            GgufValueType::I32 => GgufValue::I32(self.u32(key)? as i32),
            GgufValueType::F32 => GgufValue::F32(f32::from_bits(self.u32(key)?)),
            GgufValueType::U64 => GgufValue::U64(self.u64(key)?),
            GgufValueType::I64 => GgufValue::I64(self.u64(key)? as i64),
            GgufValueType::F64 => GgufValue::F64(f64::from_bits(self.u64(key)?)),
            GgufValueType::Bool => match self.u8(key)? {
                0 => GgufValue::Bool(false),
                1 => GgufValue::Bool(true),
                b => return Err(format!("metadata `{key}`: invalid bool byte {b}")),
            },
            GgufValueType::String => GgufValue::String(self.string(key)?),
            GgufValueType::Array => {
                if depth >= MAX_ARRAY_DEPTH {
                    return Err(format!("metadata `{key}`: arrays nested too deeply"));
                }
                let tid = self.u32(key)?;
                let ity = GgufValueType::from_id(tid)
                    .ok_or_else(|| format!("metadata `{key}`: unknown array item type {tid}"))?;
                let n = self.len(key)?;
                // Every item takes at least `min_size` bytes, so a count the
                // remaining bytes cannot hold is rejected before allocating.
                let min = ity.min_size(self.version);
                if n.checked_mul(min)
                    .is_none_or(|b| b > self.remaining() as u64)
                {
                    return Err(format!(
                        "truncated: metadata `{key}` claims {n} array items, more than the {} remaining bytes can hold",
                        self.remaining()
                    ));
                }
                let mut items = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    items.push(self.value(ity, depth + 1, key)?);
                }
                GgufValue::Array(items)
            }
        })
    }
}

fn align_up(x: u64, a: u64) -> Option<u64> {
    x.checked_add(a - 1).map(|v| v / a * a)
}

impl GgufHeader {
    /// Parses the header of a GGUF file held in `bytes` and validates every
    /// tensor's data range against `bytes.len()`. Returns a message (without
    /// the file name) on any malformation.
    pub fn parse(bytes: &[u8]) -> std::result::Result<GgufHeader, String> {
        let mut c = Cursor {
            bytes,
            pos: 0,
            version: 3,
        };
        let magic = c.array::<4>("magic")?;
        if magic != GGUF_MAGIC {
            return Err(format!(
                "bad magic {magic:02x?}: not a GGUF file (expected \"GGUF\")"
            ));
        }
        let version = c.u32("version")?;
        match version {
            1..=3 => {}
            v if v.swap_bytes() <= 3 && v.swap_bytes() > 0 => {
                return Err("big-endian GGUF files are not supported".into())
            }
            v => return Err(format!("unsupported GGUF version {v} (supported: 1 to 3)")),
        }
        c.version = version;
        let n_tensors = c.len("tensor count")?;
        let n_kv = c.len("metadata count")?;

        // Each key/value pair takes at least a key length, a type tag and one byte.
        let min_kv = len_size(version) + 4 + 1;
        if n_kv
            .checked_mul(min_kv)
            .is_none_or(|b| b > c.remaining() as u64)
        {
            return Err(format!(
                "truncated: header claims {n_kv} metadata entries, more than the file can hold"
            ));
        }
        let mut metadata = Vec::with_capacity(n_kv as usize);
        let mut seen = HashMap::new();
        for i in 0..n_kv {
            let key = c.string(&format!("metadata key #{i}"))?;
            let tid = c.u32(&key)?;
            let ty = GgufValueType::from_id(tid)
                .ok_or_else(|| format!("metadata `{key}`: unknown value type {tid}"))?;
            let value = c.value(ty, 0, &key)?;
            if seen.insert(key.clone(), ()).is_some() {
                return Err(format!("duplicate metadata key `{key}`"));
            }
            metadata.push((key, value));
        }

        let alignment = match metadata.iter().find(|(k, _)| k == "general.alignment") {
            None => DEFAULT_ALIGNMENT,
            Some((_, v)) => match v.as_u64() {
                Some(a) if a > 0 && a.is_power_of_two() && a <= 1 << 30 => a,
                _ => {
                    return Err(format!(
                        "general.alignment must be a power of two, got {v:?}"
                    ))
                }
            },
        };

        // name length + n_dims + at least one dim + type + offset
        let min_ti = len_size(version) + 4 + len_size(version) + 4 + 8;
        if n_tensors
            .checked_mul(min_ti)
            .is_none_or(|b| b > c.remaining() as u64)
        {
            return Err(format!(
                "truncated: header claims {n_tensors} tensors, more than the file can hold"
            ));
        }
        let mut tensors = Vec::with_capacity(n_tensors as usize);
        let mut names = HashMap::new();
        for i in 0..n_tensors {
            let name = c.string(&format!("name of tensor #{i}"))?;
            let n_dims = c.u32(&name)? as usize;
            if n_dims == 0 || n_dims > MAX_DIMS {
                return Err(format!(
                    "tensor `{name}` has {n_dims} dimensions (1 to {MAX_DIMS} allowed)"
                ));
            }
            let mut dims = Vec::with_capacity(n_dims);
            for _ in 0..n_dims {
                dims.push(c.len(&name)?);
            }
            let ggml_type = GgmlType::from_id(c.u32(&name)?);
            let offset = c.u64(&name)?;
            let mut numel: u64 = 1;
            for &d in &dims {
                numel = numel
                    .checked_mul(d)
                    .filter(|&n| n <= i64::MAX as u64)
                    .ok_or_else(|| format!("tensor `{name}`: element count overflows"))?;
            }
            let size = match ggml_type.block_layout() {
                Some((block, _)) => {
                    if dims[0] % block as u64 != 0 {
                        return Err(format!(
                            "tensor `{name}`: first dimension {} is not a multiple of the {} block size {block}",
                            dims[0], ggml_type
                        ));
                    }
                    ggml_type
                        .byte_size(numel)
                        .map_err(|e| format!("tensor `{name}`: {e}"))?
                }
                None => 0,
            };
            if offset % alignment != 0 {
                return Err(format!(
                    "tensor `{name}`: data offset {offset} is not aligned to {alignment}"
                ));
            }
            if names.insert(name.clone(), ()).is_some() {
                return Err(format!("duplicate tensor name `{name}`"));
            }
            tensors.push(TensorInfo {
                name,
                dims,
                ggml_type,
                offset,
                size,
            });
        }

        let data_offset = align_up(c.pos as u64, alignment)
            .ok_or_else(|| "data section offset overflows".to_string())?;
        let file_len = bytes.len() as u64;
        if !tensors.is_empty() && data_offset > file_len {
            return Err(format!(
                "truncated: data section would start at {data_offset} but the file has {file_len} bytes"
            ));
        }
        for t in &tensors {
            let end = data_offset
                .checked_add(t.offset)
                .and_then(|s| s.checked_add(t.size));
            match end {
                Some(e) if e <= file_len => {}
                _ => {
                    return Err(format!(
                        "truncated: tensor `{}` ({} bytes at data offset {}) runs past the end of the file ({file_len} bytes)",
                        t.name, t.size, t.offset
                    ))
                }
            }
        }
        Ok(GgufHeader {
            version,
            metadata,
            tensors,
            alignment,
            data_offset,
        })
    }
}

/// A parsed GGUF file with its bytes in memory.
pub struct GgufFile {
    path: String,
    header: GgufHeader,
    meta_index: HashMap<String, usize>,
    tensor_index: HashMap<String, usize>,
    bytes: Vec<u8>,
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("path", &self.path)
            .field("version", &self.header.version)
            .field("metadata", &self.header.metadata.len())
            .field("tensors", &self.header.tensors.len())
            .finish()
    }
}

impl GgufFile {
    /// Reads and parses a GGUF file.
    pub fn open(path: impl AsRef<Path>) -> Result<GgufFile> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| LmError::io(path, e))?;
        Self::from_bytes(bytes, &path.display().to_string())
    }

    /// Parses GGUF bytes; `name` is used in error messages.
    pub fn from_bytes(bytes: Vec<u8>, name: &str) -> Result<GgufFile> {
        let header = GgufHeader::parse(&bytes).map_err(|msg| LmError::Gguf {
            path: name.to_string(),
            msg,
        })?;
        let meta_index = header
            .metadata
            .iter()
            .enumerate()
            .map(|(i, (k, _))| (k.clone(), i))
            .collect();
        let tensor_index = header
            .tensors
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name.clone(), i))
            .collect();
        Ok(GgufFile {
            path: name.to_string(),
            header,
            meta_index,
            tensor_index,
            bytes,
        })
    }

    /// The path (or name) the file was loaded from.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The parsed header.
    pub fn header(&self) -> &GgufHeader {
        &self.header
    }

    /// The format version.
    pub fn version(&self) -> u32 {
        self.header.version
    }

    /// A metadata value.
    pub fn get(&self, key: &str) -> Option<&GgufValue> {
        self.meta_index
            .get(key)
            .map(|&i| &self.header.metadata[i].1)
    }

    fn meta_err(&self, key: &str, msg: impl Into<String>) -> LmError {
        LmError::Metadata {
            path: self.path.clone(),
            key: key.to_string(),
            msg: msg.into(),
        }
    }

    fn need(&self, key: &str) -> Result<&GgufValue> {
        self.get(key)
            .ok_or_else(|| self.meta_err(key, "missing required key"))
    }

    /// A required non-negative integer.
    pub fn get_u64(&self, key: &str) -> Result<u64> {
        let v = self.need(key)?;
        v.as_u64().ok_or_else(|| {
            self.meta_err(
                key,
                format!("expected a non-negative integer, found {}", v.type_name()),
            )
        })
    }

    /// A required integer that fits `usize` and is at most `max`.
    pub fn get_usize(&self, key: &str, max: u64) -> Result<usize> {
        let v = self.get_u64(key)?;
        if v > max {
            return Err(self.meta_err(key, format!("value {v} exceeds the limit {max}")));
        }
        usize::try_from(v).map_err(|_| self.meta_err(key, "value does not fit usize"))
    }

    /// An optional float.
    pub fn get_f64_opt(&self, key: &str) -> Result<Option<f64>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.as_f64().map(Some).ok_or_else(|| {
                self.meta_err(key, format!("expected a number, found {}", v.type_name()))
            }),
        }
    }

    /// A required string.
    pub fn get_str(&self, key: &str) -> Result<&str> {
        let v = self.need(key)?;
        v.as_str().ok_or_else(|| {
            self.meta_err(key, format!("expected a string, found {}", v.type_name()))
        })
    }

    /// An optional string.
    pub fn get_str_opt(&self, key: &str) -> Result<Option<&str>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.as_str().map(Some).ok_or_else(|| {
                self.meta_err(key, format!("expected a string, found {}", v.type_name()))
            }),
        }
    }

    /// An optional boolean.
    pub fn get_bool_opt(&self, key: &str) -> Result<Option<bool>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.as_bool().map(Some).ok_or_else(|| {
                self.meta_err(key, format!("expected a bool, found {}", v.type_name()))
            }),
        }
    }

    /// An optional token id (must be below `vocab_size`).
    pub fn get_token_id_opt(&self, key: &str, vocab_size: usize) -> Result<Option<u32>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => match v.as_u64() {
                Some(id) if id < vocab_size as u64 => Ok(Some(id as u32)),
                _ => Err(self.meta_err(
                    key,
                    format!("not a token id below the vocabulary size {vocab_size}: {v:?}"),
                )),
            },
        }
    }

    /// A required array of strings.
    pub fn get_str_array(&self, key: &str) -> Result<Vec<&str>> {
        let v = self.need(key)?;
        let arr = v.as_array().ok_or_else(|| {
            self.meta_err(key, format!("expected an array, found {}", v.type_name()))
        })?;
        arr.iter()
            .map(|x| {
                x.as_str().ok_or_else(|| {
                    self.meta_err(
                        key,
                        format!("expected array of strings, found {}", x.type_name()),
                    )
                })
            })
            .collect()
    }

    /// An optional array of numbers, as `f64`.
    pub fn get_f64_array_opt(&self, key: &str) -> Result<Option<Vec<f64>>> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        let arr = v.as_array().ok_or_else(|| {
            self.meta_err(key, format!("expected an array, found {}", v.type_name()))
        })?;
        arr.iter()
            .map(|x| {
                x.as_f64().ok_or_else(|| {
                    self.meta_err(
                        key,
                        format!("expected array of numbers, found {}", x.type_name()),
                    )
                })
            })
            .collect::<Result<Vec<_>>>()
            .map(Some)
    }

    /// An optional array of integers.
    pub fn get_i64_array_opt(&self, key: &str) -> Result<Option<Vec<i64>>> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        let arr = v.as_array().ok_or_else(|| {
            self.meta_err(key, format!("expected an array, found {}", v.type_name()))
        })?;
        arr.iter()
            .map(|x| {
                x.as_i64().ok_or_else(|| {
                    self.meta_err(
                        key,
                        format!("expected array of integers, found {}", x.type_name()),
                    )
                })
            })
            .collect::<Result<Vec<_>>>()
            .map(Some)
    }

    /// The tensor directory.
    pub fn tensor_infos(&self) -> &[TensorInfo] {
        &self.header.tensors
    }

    /// One tensor's directory entry.
    pub fn tensor_info(&self, name: &str) -> Option<&TensorInfo> {
        self.tensor_index
            .get(name)
            .map(|&i| &self.header.tensors[i])
    }

    fn tensor_err(&self, name: &str, msg: impl Into<String>) -> LmError {
        LmError::Tensor {
            path: self.path.clone(),
            tensor: name.to_string(),
            msg: msg.into(),
        }
    }

    /// The raw bytes of a tensor.
    pub fn tensor_bytes(&self, name: &str) -> Result<&[u8]> {
        let info = self
            .tensor_info(name)
            .ok_or_else(|| LmError::MissingTensor {
                path: self.path.clone(),
                tensor: name.to_string(),
            })?;
        if info.ggml_type.block_layout().is_none() {
            return Err(self.tensor_err(
                name,
                format!(
                    "tensor type {} (id {}) is not supported",
                    info.ggml_type,
                    info.ggml_type.id()
                ),
            ));
        }
        // Ranges were validated at parse time; checked again here so that a
        // logic error can never turn into an out-of-bounds panic.
        let start = self
            .header
            .data_offset
            .checked_add(info.offset)
            .and_then(|s| usize::try_from(s).ok());
        let end = start.and_then(|s| s.checked_add(usize::try_from(info.size).ok()?));
        match (start, end) {
            (Some(s), Some(e)) if e <= self.bytes.len() => Ok(&self.bytes[s..e]),
            _ => Err(self.tensor_err(name, "data lies outside the file")),
        }
    }

    /// Dequantises a tensor into `f32` values (ggml order) and its torch shape.
    pub fn dequantize(&self, name: &str) -> Result<(Vec<f32>, Vec<i64>)> {
        let data = self.tensor_bytes(name)?;
        let info = self
            .tensor_info(name)
            .ok_or_else(|| self.tensor_err(name, "missing"))?;
        let n = usize::try_from(info.numel())
            .map_err(|_| self.tensor_err(name, "too many elements"))?;
        let values =
            quant::dequantize(info.ggml_type, data, n).map_err(|m| self.tensor_err(name, m))?;
        Ok((values, info.torch_shape()))
    }

    /// Loads a tensor, dequantised, as a `kind` tensor on `device`, with
    /// `requires_grad = false`.
    pub fn tensor(&self, name: &str, kind: Kind, device: Device) -> Result<Tensor> {
        let (values, shape) = self.dequantize(name)?;
        let t = Tensor::f_from_slice(&values)?.f_reshape(&shape)?;
        let t = if kind == Kind::Float {
            t
        } else {
            t.f_to_kind(kind)?
        };
        let t = if device == Device::Cpu {
            t
        } else {
            t.f_to_device(device)?
        };
        Ok(t.set_requires_grad(false))
    }

    /// Loads a tensor and checks its torch shape.
    pub fn tensor_shaped(
        &self,
        name: &str,
        shape: &[i64],
        kind: Kind,
        device: Device,
    ) -> Result<Tensor> {
        if let Some(info) = self.tensor_info(name) {
            let got = info.torch_shape();
            if got != shape {
                return Err(self.tensor_err(
                    name,
                    format!("shape {got:?} (torch order) does not match the expected {shape:?}"),
                ));
            }
        }
        self.tensor(name, kind, device)
    }
}

/// Builds GGUF version-3 bytes from metadata and `(name, dims, type, data)`
/// tensors. Used by tests and tools to make small files.
pub fn write_gguf(
    metadata: &[(&str, GgufValue)],
    tensors: &[(&str, Vec<u64>, GgmlType, Vec<u8>)],
) -> Vec<u8> {
    fn put_str(out: &mut Vec<u8>, s: &str) {
        out.extend_from_slice(&(s.len() as u64).to_le_bytes());
        out.extend_from_slice(s.as_bytes());
    }
    fn type_id(v: &GgufValue) -> u32 {
        match v {
            GgufValue::U8(_) => 0,
            GgufValue::I8(_) => 1,
            GgufValue::U16(_) => 2,
            GgufValue::I16(_) => 3,
            GgufValue::U32(_) => 4,
            GgufValue::I32(_) => 5,
            GgufValue::F32(_) => 6,
            GgufValue::Bool(_) => 7,
            GgufValue::String(_) => 8,
            GgufValue::Array(_) => 9,
            GgufValue::U64(_) => 10,
            GgufValue::I64(_) => 11,
            GgufValue::F64(_) => 12,
        }
    }
    fn put_val(out: &mut Vec<u8>, v: &GgufValue) {
        match v {
            GgufValue::U8(x) => out.push(*x),
            GgufValue::I8(x) => out.push(*x as u8),
            GgufValue::U16(x) => out.extend_from_slice(&x.to_le_bytes()),
            GgufValue::I16(x) => out.extend_from_slice(&x.to_le_bytes()),
            GgufValue::U32(x) => out.extend_from_slice(&x.to_le_bytes()),
            GgufValue::I32(x) => out.extend_from_slice(&x.to_le_bytes()),
            GgufValue::F32(x) => out.extend_from_slice(&x.to_le_bytes()),
            GgufValue::Bool(x) => out.push(*x as u8),
            GgufValue::String(s) => put_str(out, s),
            GgufValue::Array(items) => {
                let ty = items.first().map(type_id).unwrap_or(0);
                out.extend_from_slice(&ty.to_le_bytes());
                out.extend_from_slice(&(items.len() as u64).to_le_bytes());
                for it in items {
                    put_val(out, it);
                }
            }
            GgufValue::U64(x) => out.extend_from_slice(&x.to_le_bytes()),
            GgufValue::I64(x) => out.extend_from_slice(&x.to_le_bytes()),
            GgufValue::F64(x) => out.extend_from_slice(&x.to_le_bytes()),
        }
    }
    let align = DEFAULT_ALIGNMENT as usize;
    let mut out = Vec::new();
    out.extend_from_slice(&GGUF_MAGIC);
    out.extend_from_slice(&3u32.to_le_bytes());
    out.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
    out.extend_from_slice(&(metadata.len() as u64).to_le_bytes());
    for (k, v) in metadata {
        put_str(&mut out, k);
        out.extend_from_slice(&type_id(v).to_le_bytes());
        put_val(&mut out, v);
    }
    let mut offset = 0usize;
    let mut offsets = Vec::new();
    for (name, dims, ty, data) in tensors {
        put_str(&mut out, name);
        out.extend_from_slice(&(dims.len() as u32).to_le_bytes());
        for d in dims {
            out.extend_from_slice(&d.to_le_bytes());
        }
        out.extend_from_slice(&ty.id().to_le_bytes());
        out.extend_from_slice(&(offset as u64).to_le_bytes());
        offsets.push(offset);
        offset += data.len().div_ceil(align) * align;
    }
    while out.len() % align != 0 {
        out.push(0);
    }
    let base = out.len();
    for ((_, _, _, data), off) in tensors.iter().zip(offsets) {
        out.resize(base + off, 0);
        out.extend_from_slice(data);
    }
    out
}
