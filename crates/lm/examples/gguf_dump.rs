//! Prints the metadata and tensor directory of a GGUF file.
use emorl_lm::gguf::{GgufFile, GgufValue};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .ok_or("usage: gguf_dump FILE.gguf")?;
    let g = GgufFile::open(&path)?;
    let h = g.header();
    println!(
        "version {} alignment {} data at {}",
        h.version, h.alignment, h.data_offset
    );
    for (k, v) in &h.metadata {
        match v {
            GgufValue::Array(a) => println!(
                "{k} = array of {} {:?}",
                a.len(),
                a.iter().take(4).collect::<Vec<_>>()
            ),
            GgufValue::String(s) if s.len() > 200 => println!("{k} = string of {} bytes", s.len()),
            v => println!("{k} = {v:?}"),
        }
    }
    for t in &h.tensors {
        println!(
            "{} {:?} {} offset {} size {}",
            t.name, t.dims, t.ggml_type, t.offset, t.size
        );
    }
    Ok(())
}
