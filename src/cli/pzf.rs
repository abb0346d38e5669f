//! The `pzf` subcommand: encode raw frames to PZF files and decode them back.
//! Only parses arguments and prints; the work is in `pyme_streaming::pzf::files`.

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};
use pyme_streaming::pzf::files::{decode_file, encode_raw_file, parse_shape};
use pyme_streaming::pzf::{Compression, DataFormat, EncodeParams, Quantization};

#[derive(Debug, Subcommand)]
pub enum PzfCommand {
    /// Write one PZF file per frame of a raw little-endian file, named OUT_PREFIX%05d.pzf.
    Encode(EncodeArgs),
    /// Decode a PZF file to raw pixels and print its header.
    Decode(DecodeArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Dtype {
    U8,
    U16,
    F32,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum CompressionArg {
    Raw,
    Huffman,
    HuffmanChunked,
}

#[derive(Debug, Args)]
pub struct EncodeArgs {
    /// Pixel type.
    #[arg(long)]
    dtype: Dtype,
    /// ROWSxCOLS or ROWSxCOLSxDEPTH.
    #[arg(long)]
    shape: String,
    /// Encode at most this many frames.
    #[arg(long)]
    frames: Option<usize>,
    #[arg(long, value_enum, default_value = "huffman")]
    compression: CompressionArg,
    /// Square-root quantization offset (uint16 only; needs --quant-scale).
    #[arg(long, requires = "quant_scale")]
    quant_offset: Option<f32>,
    /// Square-root quantization scale (uint16 only).
    #[arg(long)]
    quant_scale: Option<f32>,
    /// Series identifier written in every header.
    #[arg(long, default_value_t = 0)]
    sequence_id: i64,
    /// The raw frames: a file, or a pipe such as /dev/stdin (read one frame at a time).
    input: PathBuf,
    /// Each frame goes to OUT_PREFIX%05d.pzf, numbered from 0.
    out_prefix: String,
}

#[derive(Debug, Args)]
pub struct DecodeArgs {
    input: PathBuf,
    output: PathBuf,
}

pub fn run(cmd: PzfCommand) -> Result<(), Box<dyn std::error::Error>> {
    match cmd {
        PzfCommand::Encode(args) => encode(args),
        PzfCommand::Decode(args) => decode(args),
    }
}

fn encode(args: EncodeArgs) -> Result<(), Box<dyn std::error::Error>> {
    let (width, height, depth) = parse_shape(&args.shape)?;
    let format = match args.dtype {
        Dtype::U8 => DataFormat::U8,
        Dtype::U16 => DataFormat::U16,
        Dtype::F32 => DataFormat::F32,
    };
    let mut params = EncodeParams::new(format, width, height);
    params.depth = depth;
    params.sequence_id = args.sequence_id;
    params.compression = match args.compression {
        CompressionArg::Raw => Compression::Raw,
        CompressionArg::Huffman => Compression::Huffman,
        CompressionArg::HuffmanChunked => Compression::HuffmanChunked,
    };
    if let Some(scale) = args.quant_scale {
        params.quantization = Quantization::Sqrt;
        params.quant_scale = scale;
        params.quant_offset = args.quant_offset.unwrap_or(0.0);
    }
    let written = encode_raw_file(&args.input, &args.out_prefix, &params, args.frames)?;
    println!("wrote {} PZF files", written.len());
    Ok(())
}

fn decode(args: DecodeArgs) -> Result<(), Box<dyn std::error::Error>> {
    let h = decode_file(&args.input, &args.output)?;
    println!("version {}", h.version);
    println!("format {:?}", h.format);
    println!("compression {:?}", h.compression);
    println!(
        "quantization {:?} (offset {}, scale {})",
        h.quantization, h.quant_offset, h.quant_scale
    );
    println!("order {:?}", h.order);
    println!("shape {}x{}x{}", h.width, h.height, h.depth);
    println!("sequence_id {}", h.sequence_id);
    println!("frame_num {}", h.frame_num);
    println!("timestamp {}", h.timestamp);
    Ok(())
}
