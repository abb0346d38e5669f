//! Huffman blocks in the Basic Compression Library format, as pymecompress writes them
//! (PYME_WIRE.md section 4): a pre-order code tree, then one code per input byte, MSB first.
//!
//! The encoder builds the tree exactly as the reference does, so its output is
//! byte-identical; unlike the reference it is correct for every code length. The
//! decoder trusts nothing in a block: a corrupt tree or a short stream is an error.
//! The `_into` functions allocate nothing: tables live on the stack and output goes
//! to the caller's buffers.

use thiserror::Error;

/// A Huffman block could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum HuffmanError {
    /// The block ends before the code tree is complete.
    #[error("Huffman block ends inside its code tree")]
    TruncatedTree,
    /// The code tree has more leaves than there are byte values.
    #[error("Huffman code tree has more than 256 leaves")]
    TreeTooLarge,
    /// The block holds fewer codes than the decoded length asks for.
    #[error("Huffman block ends after {decoded} of {expected} symbols")]
    Truncated { decoded: usize, expected: usize },
    /// The block is too short to hold the asked-for number of symbols at all.
    #[error("Huffman block of {bytes} bytes cannot hold {expected} symbols")]
    TooShort { bytes: usize, expected: usize },
}

/// Symbols (bytes) to encode, produced block by block so that a transform such as
/// quantization can feed the encoder without an intermediate buffer.
pub trait SymbolSource: Sync {
    /// Number of symbols.
    fn len(&self) -> usize;
    /// True if there are no symbols.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Symbols `start .. start + buf.len()`: borrowed from the source, or written into `buf`.
    fn block<'a>(&'a self, start: usize, buf: &'a mut [u8]) -> &'a [u8];
}

impl SymbolSource for [u8] {
    fn len(&self) -> usize {
        <[u8]>::len(self)
    }
    fn block<'a>(&'a self, start: usize, buf: &'a mut [u8]) -> &'a [u8] {
        &self[start..start + buf.len()]
    }
}

/// A range of another source's symbols (one chunk of a chunked frame).
pub struct SubSource<'s, S: SymbolSource + ?Sized> {
    pub source: &'s S,
    pub start: usize,
    pub len: usize,
}

impl<S: SymbolSource + ?Sized> SymbolSource for SubSource<'_, S> {
    fn len(&self) -> usize {
        self.len
    }
    fn block<'a>(&'a self, start: usize, buf: &'a mut [u8]) -> &'a [u8] {
        self.source.block(self.start + start, buf)
    }
}

/// How many symbols are pulled from a source at a time.
const BLOCK: usize = 4096;
/// Bits of the tree at most: 255 internal nodes of 1 bit, 256 leaves of 9.
const MAX_TREE_BYTES: usize = (255 + 256 * 9usize).div_ceil(8);

/// Counts of each byte value.
pub type Histogram = [u64; 256];

/// Counts how often each byte value occurs in `source`.
pub fn histogram<S: SymbolSource + ?Sized>(source: &S) -> Histogram {
    // Four sub-tables: consecutive equal bytes then hit different counters, which
    // avoids stalls on a store that the next increment must wait for.
    let mut sub = [[0u32; 256]; 4];
    let mut total = [0u64; 256];
    let mut buf = [0u8; BLOCK];
    let mut since_merge = 0usize;
    let mut start = 0;
    while start < source.len() {
        let len = BLOCK.min(source.len() - start);
        let block = source.block(start, &mut buf[..len]);
        count_block(block, &mut sub);
        start += len;
        since_merge += len;
        if since_merge >= 1 << 30 {
            merge_counts(&mut sub, &mut total);
            since_merge = 0;
        }
    }
    merge_counts(&mut sub, &mut total);
    total
}

fn count_block(block: &[u8], sub: &mut [[u32; 256]; 4]) {
    let mut words = block.chunks_exact(8);
    for word in &mut words {
        let v = u64::from_le_bytes(word.try_into().expect("8 bytes"));
        sub[0][(v & 0xff) as usize] += 1;
        sub[1][((v >> 8) & 0xff) as usize] += 1;
        sub[2][((v >> 16) & 0xff) as usize] += 1;
        sub[3][((v >> 24) & 0xff) as usize] += 1;
        sub[0][((v >> 32) & 0xff) as usize] += 1;
        sub[1][((v >> 40) & 0xff) as usize] += 1;
        sub[2][((v >> 48) & 0xff) as usize] += 1;
        sub[3][(v >> 56) as usize] += 1;
    }
    for &b in words.remainder() {
        sub[0][b as usize] += 1;
    }
}

fn merge_counts(sub: &mut [[u32; 256]; 4], total: &mut Histogram) {
    for table in sub.iter_mut() {
        for (t, c) in total.iter_mut().zip(table.iter_mut()) {
            *t += u64::from(*c);
            *c = 0;
        }
    }
}

/// A node of the encoder's tree: a leaf (`children` is None) or the join of two nodes.
#[derive(Clone, Copy, Default)]
struct BuildNode {
    weight: u64,
    symbol: u8,
    children: Option<(u16, u16)>,
    joined: bool,
}

/// The reference's tree: leaves in symbol order, then repeatedly join the two
/// lightest unjoined nodes (ties go to the node created last). Returns the nodes
/// and the root's index, or None for an empty histogram.
fn build_tree(hist: &Histogram, nodes: &mut [BuildNode; 511]) -> Option<usize> {
    let mut count = 0;
    for (symbol, &weight) in hist.iter().enumerate() {
        if weight > 0 {
            nodes[count] = BuildNode {
                weight,
                symbol: symbol as u8,
                children: None,
                joined: false,
            };
            count += 1;
        }
    }
    if count == 0 {
        return None;
    }
    let mut unjoined = count;
    while unjoined > 1 {
        let (lightest, second) = two_lightest(&nodes[..count]);
        nodes[lightest].joined = true;
        nodes[second].joined = true;
        nodes[count] = BuildNode {
            weight: nodes[lightest].weight + nodes[second].weight,
            symbol: 0,
            children: Some((lightest as u16, second as u16)),
            joined: false,
        };
        count += 1;
        unjoined -= 1;
    }
    Some(count - 1)
}

fn two_lightest(nodes: &[BuildNode]) -> (usize, usize) {
    let mut lightest: Option<usize> = None;
    let mut second: Option<usize> = None;
    for (i, node) in nodes.iter().enumerate() {
        if node.joined {
            continue;
        }
        if lightest.is_none_or(|l| node.weight <= nodes[l].weight) {
            second = lightest;
            lightest = Some(i);
        } else if second.is_none_or(|s| node.weight <= nodes[s].weight) {
            second = Some(i);
        }
    }
    (lightest.expect("two nodes"), second.expect("two nodes"))
}

/// A code of up to 255 bits (a tree over 256 leaves is at most 255 deep), packed most significant (root-side) bit first.
type LongCode = [u64; 4];

/// `len` (at most 56) bits of `code` starting at bit `start`, right-aligned.
fn code_bits(code: &LongCode, start: usize, len: usize) -> u64 {
    let word = start / 64;
    let offset = start % 64;
    let mut bits = code[word] << offset;
    if offset > 0 && word + 1 < code.len() {
        bits |= code[word + 1] >> (64 - offset);
    }
    bits >> (64 - len)
}

fn set_code_bit(code: &mut LongCode, index: usize) {
    code[index / 64] |= 1u64 << (63 - index % 64);
}

/// Everything needed to write one block: the codes, the tree bits, the exact size.
pub struct EncodePlan {
    lens: [u8; 256],
    codes: [LongCode; 256],
    tree: [u8; MAX_TREE_BYTES],
    tree_bits: usize,
    max_len: usize,
    symbols: usize,
    bytes: usize,
}

impl EncodePlan {
    /// Plans the block for symbols with this histogram.
    pub fn new(hist: &Histogram) -> Self {
        Self::with_weights(hist, hist)
    }

    /// Plans a block of symbols counted in `counts` with the tree built from
    /// `weights` (which must be non-zero wherever `counts` is).
    fn with_weights(weights: &Histogram, counts: &Histogram) -> Self {
        let mut plan = EncodePlan {
            lens: [0; 256],
            codes: [[0; 4]; 256],
            tree: [0; MAX_TREE_BYTES],
            tree_bits: 0,
            max_len: 0,
            symbols: 0,
            bytes: 0,
        };
        let mut nodes = [BuildNode::default(); 511];
        let Some(root) = build_tree(weights, &mut nodes) else {
            return plan;
        };
        let mut path = [0u64; 4];
        plan.walk(&nodes, root, 0, &mut path);
        if nodes[root].children.is_none() {
            // A lone symbol is coded with the one-bit code 0.
            plan.lens[nodes[root].symbol as usize] = 1;
        }
        let mut bits = plan.tree_bits as u64;
        for (&count, &len) in counts.iter().zip(plan.lens.iter()) {
            assert!(count == 0 || len > 0, "a counted symbol has no code");
            bits += count * u64::from(len);
            plan.max_len = plan.max_len.max(len as usize);
        }
        plan.symbols = counts.iter().sum::<u64>() as usize;
        plan.bytes = block_bytes(bits);
        plan
    }

    /// Size of the block in bytes.
    pub fn block_len(&self) -> usize {
        self.bytes
    }

    fn walk(&mut self, nodes: &[BuildNode; 511], node: usize, depth: usize, path: &mut LongCode) {
        match nodes[node].children {
            None => {
                self.push_tree_bits(1, 1);
                let symbol = nodes[node].symbol;
                self.push_tree_bits(u32::from(symbol), 8);
                self.lens[symbol as usize] = depth as u8;
                self.codes[symbol as usize] = *path;
            }
            Some((a, b)) => {
                self.push_tree_bits(0, 1);
                self.walk(nodes, a as usize, depth + 1, path);
                set_code_bit(path, depth);
                self.walk(nodes, b as usize, depth + 1, path);
                path[depth / 64] &= !(1u64 << (63 - depth % 64));
            }
        }
    }

    fn push_tree_bits(&mut self, value: u32, len: usize) {
        for i in (0..len).rev() {
            if (value >> i) & 1 == 1 {
                self.tree[self.tree_bits / 8] |= 0x80 >> (self.tree_bits % 8);
            }
            self.tree_bits += 1;
        }
    }

    /// Writes the block for `source` (which must have the planned histogram) into
    /// `dst`, which must be exactly `block_len()` bytes long and zeroed.
    pub fn write<S: SymbolSource + ?Sized>(&self, source: &S, dst: &mut [u8]) {
        assert_eq!(dst.len(), self.bytes, "destination is not the planned size");
        assert_eq!(source.len(), self.symbols, "source is not the planned one");
        let mut w = BitWriter {
            dst,
            pos: 0,
            acc: 0,
            nbits: 0,
        };
        self.write_tree(&mut w);
        let table = self.short_code_table();
        let pairs = self.max_len <= 28 && source.len() >= PAIRS_MIN_SYMBOLS;
        PAIR_TABLE.with_borrow_mut(|pair_table| {
            if pairs {
                fill_pair_table(&table, pair_table);
            }
            let mut buf = [0u8; BLOCK];
            let mut start = 0;
            while start < source.len() {
                let len = BLOCK.min(source.len() - start);
                let symbols = source.block(start, &mut buf[..len]);
                if pairs {
                    write_code_pairs(&mut w, symbols, pair_table, &table);
                } else if self.max_len <= 56 {
                    write_codes(&mut w, symbols, &table);
                } else {
                    self.write_long_codes(&mut w, symbols);
                }
                start += len;
            }
        });
    }

    fn write_tree(&self, w: &mut BitWriter<'_>) {
        let full = self.tree_bits / 8;
        for &byte in &self.tree[..full] {
            w.put(u64::from(byte), 8);
            w.flush();
        }
        let rest = self.tree_bits % 8;
        if rest > 0 {
            w.put(u64::from(self.tree[full] >> (8 - rest)), rest as u32);
            w.flush();
        }
    }

    /// Per symbol, `code << 8 | len` for codes of at most 56 bits.
    fn short_code_table(&self) -> [u64; 256] {
        let mut table = [0u64; 256];
        for (s, entry) in table.iter_mut().enumerate() {
            let len = self.lens[s] as usize;
            if (1..=56).contains(&len) {
                *entry = (code_bits(&self.codes[s], 0, len) << 8) | len as u64;
            }
        }
        table
    }

    /// The slow path, for trees deeper than 56: long codes go out in pieces.
    fn write_long_codes(&self, w: &mut BitWriter<'_>, symbols: &[u8]) {
        for &s in symbols {
            let len = self.lens[s as usize] as usize;
            let code = &self.codes[s as usize];
            let mut start = 0;
            while start < len {
                let piece = (len - start).min(48);
                w.put(code_bits(code, start, piece), piece as u32);
                w.flush();
                start += piece;
            }
        }
    }
}

/// Bytes of a block holding `bits` bits: pymecompress ends the block at the last
/// byte holding code bits, with no slack byte (the golden vectors check this).
fn block_bytes(bits: u64) -> usize {
    bits.div_ceil(8) as usize
}

/// Codes of at most 56 bits. Eight codes that fit in 56 bits together (the common
/// case) are first joined pairwise, which keeps the accumulator's chain of
/// dependent shifts short, and go out with one flush; otherwise one flush per code.
fn write_codes(w: &mut BitWriter<'_>, symbols: &[u8], table: &[u64; 256]) {
    let mut groups = symbols.chunks_exact(GROUP);
    for group in &mut groups {
        let group: &[u8; GROUP] = group.try_into().expect("GROUP symbols");
        let entries = group.map(|s| table[s as usize]);
        let lens = entries.map(|e| e & 0xff);
        let total: u64 = lens.iter().sum();
        if total <= 56 {
            let codes = entries.map(|e| e >> 8);
            let pair = |i: usize| (codes[i] << lens[i + 1]) | codes[i + 1];
            let (l01, l23, l45, l67) = (
                lens[0] + lens[1],
                lens[2] + lens[3],
                lens[4] + lens[5],
                lens[6] + lens[7],
            );
            let low = (pair(0) << l23) | pair(2);
            let high = (pair(4) << l67) | pair(6);
            let all = (low << (l45 + l67)) | high;
            debug_assert!(l01 + l23 + l45 + l67 == total);
            w.put(all, total as u32);
            w.flush();
        } else {
            for entry in entries {
                w.put(entry >> 8, (entry & 0xff) as u32);
                w.flush();
            }
        }
    }
    for &s in groups.remainder() {
        let entry = table[s as usize];
        w.put(entry >> 8, (entry & 0xff) as u32);
        w.flush();
    }
}

/// Symbols coded between two flushes in [`write_codes`].
const GROUP: usize = 8;

/// Blocks of at least this many symbols are coded two symbols per table
/// lookup: filling the pair table (64 Ki entries) pays for itself.
const PAIRS_MIN_SYMBOLS: usize = 1 << 18;

thread_local! {
    /// The pair table of the frame being coded on this thread: kept between
    /// frames, so the steady state allocates nothing.
    static PAIR_TABLE: std::cell::RefCell<Vec<u64>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// For every two consecutive symbols `a, b` (index `b << 8 | a`, the order a
/// little-endian read gives), `code(a) code(b) << 8 | len(a) + len(b)`.
/// Codes of at most 28 bits keep every pair within 56 bits.
fn fill_pair_table(table: &[u64; 256], pairs: &mut Vec<u64>) {
    pairs.resize(1 << 16, 0);
    for (b, entry_b) in table.iter().enumerate() {
        let (code_b, len_b) = (entry_b >> 8, entry_b & 0xff);
        let row = &mut pairs[b << 8..(b + 1) << 8];
        for (slot, entry_a) in row.iter_mut().zip(table.iter()) {
            let (code_a, len_a) = (entry_a >> 8, entry_a & 0xff);
            *slot = (((code_a << len_b) | code_b) << 8) | (len_a + len_b);
        }
    }
}

/// As [`write_codes`], two symbols per lookup: eight symbols are four pairs,
/// joined and flushed once when they fit in 56 bits.
fn write_code_pairs(w: &mut BitWriter<'_>, symbols: &[u8], pairs: &[u64], table: &[u64; 256]) {
    let mut words = symbols.chunks_exact(GROUP);
    for word in &mut words {
        let v = u64::from_le_bytes(word.try_into().expect("GROUP symbols"));
        let e = [
            pairs[(v & 0xffff) as usize],
            pairs[((v >> 16) & 0xffff) as usize],
            pairs[((v >> 32) & 0xffff) as usize],
            pairs[(v >> 48) as usize],
        ];
        let lens = e.map(|e| e & 0xff);
        let total = lens[0] + lens[1] + lens[2] + lens[3];
        if total <= 56 {
            let codes = e.map(|e| e >> 8);
            let low = (codes[0] << lens[1]) | codes[1];
            let high = (codes[2] << lens[3]) | codes[3];
            w.put((low << (lens[2] + lens[3])) | high, total as u32);
            w.flush();
        } else {
            for entry in e {
                w.put(entry >> 8, (entry & 0xff) as u32);
                w.flush();
            }
        }
    }
    for &s in words.remainder() {
        let entry = table[s as usize];
        w.put(entry >> 8, (entry & 0xff) as u32);
        w.flush();
    }
}

/// MSB-first bit writer: codes gather in a 64-bit accumulator, whole bytes go out.
struct BitWriter<'a> {
    dst: &'a mut [u8],
    pos: usize,
    acc: u64,
    nbits: u32,
}

impl BitWriter<'_> {
    /// Appends `len` bits; the caller keeps `nbits + len` at most 63.
    #[inline(always)]
    fn put(&mut self, code: u64, len: u32) {
        self.acc = (self.acc << len) | code;
        self.nbits += len;
    }

    /// Stores the pending bits (the partial byte included) and drops the whole bytes.
    #[inline(always)]
    fn flush(&mut self) {
        let aligned = (self.acc << (63 - self.nbits)) << 1;
        let bytes = aligned.to_be_bytes();
        if let Some(dst) = self.dst.get_mut(self.pos..self.pos + 8) {
            dst.copy_from_slice(&bytes);
        } else {
            let dst = &mut self.dst[self.pos..];
            let n = dst.len();
            dst.copy_from_slice(&bytes[..n]);
        }
        self.pos += (self.nbits >> 3) as usize;
        self.nbits &= 7;
    }
}

/// Encodes `source` as one block appended to `out`.
pub fn encode_into<S: SymbolSource + ?Sized>(source: &S, out: &mut Vec<u8>) {
    let plan = EncodePlan::new(&histogram(source));
    let start = out.len();
    out.resize(start + plan.block_len(), 0);
    plan.write(source, &mut out[start..]);
}

/// Encodes `data` with the code tree that `weights` would give: a test hook for
/// code lengths no real input of testable size produces (up to 88 bits with
/// Fibonacci weights). `weights` must be non-zero for every byte in `data`.
#[doc(hidden)]
pub fn encode_with_weights(weights: &Histogram, data: &[u8]) -> Vec<u8> {
    let plan = EncodePlan::with_weights(weights, &histogram(data));
    let mut out = vec![0u8; plan.block_len()];
    plan.write(data, &mut out);
    out
}

/// Encodes `data` as one block.
pub fn encode(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_into(data, &mut out);
    out
}

// ---------------------------------------------------------------- decoding

/// Bits resolved by one table look-up.
const TABLE_BITS: u32 = 13;
const TABLE_SIZE: usize = 1 << TABLE_BITS;
// A table entry is `symbols << 8 | count << 6 | len`: up to three symbols whose
// codes take `len` bits in all. The length sits in the low bits so that a shift by
// the whole entry (masked to 6 bits by the CPU) consumes the codes. An entry with
// count 0 is a code longer than TABLE_BITS: `node << 8`, the internal node reached.
const COUNT_MASK: u32 = 0b11 << 6;
const LEN_MASK: u32 = 63;

fn entry_is_long(entry: u32) -> bool {
    entry & COUNT_MASK == 0
}
/// A child reference in the decoder's tree: leaves carry this flag and their symbol.
const LEAF: u16 = 1 << 15;

/// The decoder's tree: internal nodes with their two children.
struct DecodeTree {
    children: [[u16; 2]; 255],
    internal: usize,
}

impl DecodeTree {
    /// Reads the pre-order tree; returns the root reference.
    fn read(reader: &mut BitReader<'_>) -> Result<(Self, u16), HuffmanError> {
        let mut tree = DecodeTree {
            children: [[0; 2]; 255],
            internal: 0,
        };
        let root = tree.read_node(reader)?;
        Ok((tree, root))
    }

    fn read_node(&mut self, reader: &mut BitReader<'_>) -> Result<u16, HuffmanError> {
        let is_leaf = reader.bits(1).ok_or(HuffmanError::TruncatedTree)?;
        if is_leaf == 1 {
            let symbol = reader.bits(8).ok_or(HuffmanError::TruncatedTree)?;
            return Ok(LEAF | symbol as u16);
        }
        if self.internal == self.children.len() {
            return Err(HuffmanError::TreeTooLarge);
        }
        let index = self.internal;
        self.internal += 1;
        let a = self.read_node(reader)?;
        let b = self.read_node(reader)?;
        self.children[index] = [a, b];
        Ok(index as u16)
    }

    /// Fills `table` (TABLE_BITS-bit prefixes) with single-symbol entries.
    fn fill_table(&self, node: u16, depth: u32, prefix: usize, table: &mut [u32; TABLE_SIZE]) {
        if node & LEAF != 0 {
            let span = 1usize << (TABLE_BITS - depth);
            let entry = u32::from(node & 0xff) << 8 | 1 << 6 | depth;
            table[prefix * span..(prefix + 1) * span].fill(entry);
        } else if depth == TABLE_BITS {
            table[prefix] = u32::from(node) << 8;
        } else {
            let [a, b] = self.children[node as usize];
            self.fill_table(a, depth + 1, prefix * 2, table);
            self.fill_table(b, depth + 1, prefix * 2 + 1, table);
        }
    }

    /// Walks from `node` bit by bit to a leaf.
    fn walk(&self, mut node: u16, reader: &mut BitReader<'_>) -> Option<u8> {
        while node & LEAF == 0 {
            let bit = reader.bits(1)?;
            node = self.children[node as usize][bit as usize];
        }
        Some((node & 0xff) as u8)
    }
}

/// Most symbols one multi-symbol entry holds.
const MULTI_MAX: u64 = 4;
// A multi-symbol entry is `symbols << 32 | count << 6 | len`: up to four symbols
// whose codes take `len` bits in all, `len` in the low bits as in the single table.
// Count 0 is a long code: `node << 16`, the internal node reached.
const MULTI_COUNT_MASK: u64 = 0b111 << 6;

/// Combines single-symbol entries into entries of up to four symbols that fit in
/// TABLE_BITS bits.
fn multi_symbol_table(single: &[u32; TABLE_SIZE], multi: &mut [u64; TABLE_SIZE]) {
    for (index, entry) in multi.iter_mut().enumerate() {
        let first = single[index];
        if entry_is_long(first) {
            *entry = u64::from(first >> 8) << 16;
            continue;
        }
        let mut symbols = u64::from(first >> 8);
        let mut len = first & LEN_MASK;
        let mut count = 1;
        while count < MULTI_MAX {
            let next = single[(index << len) & (TABLE_SIZE - 1)];
            let next_len = next & LEN_MASK;
            if entry_is_long(next) || len + next_len > TABLE_BITS {
                break;
            }
            symbols |= u64::from(next >> 8) << (8 * count);
            len += next_len;
            count += 1;
        }
        *entry = symbols << 32 | count << 6 | u64::from(len);
    }
}

/// Bounds-checked MSB-first bit reader.
struct BitReader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl BitReader<'_> {
    fn bits_left(&self) -> usize {
        self.data.len() * 8 - self.pos
    }

    /// Reads `n` (at most 57) bits, or None past the end.
    fn bits(&mut self, n: u32) -> Option<u64> {
        if self.bits_left() < n as usize {
            return None;
        }
        let v = self.peek() >> (64 - n);
        self.pos += n as usize;
        Some(v)
    }

    /// The next 57 or more bits, left-aligned, zeros past the end.
    #[inline(always)]
    fn peek(&self) -> u64 {
        let byte = self.pos / 8;
        let word = match self.data.get(byte..byte + 8) {
            Some(b) => u64::from_be_bytes(b.try_into().expect("8 bytes")),
            None => {
                let mut b = [0u8; 8];
                let tail = &self.data[byte.min(self.data.len())..];
                b[..tail.len()].copy_from_slice(tail);
                u64::from_be_bytes(b)
            }
        };
        word << (self.pos % 8)
    }
}

/// Decodes a block into `out`, whose length is the number of symbols to decode.
/// Returns the number of bytes of `block` that held tree and codes.
pub fn decode_into(block: &[u8], out: &mut [u8]) -> Result<usize, HuffmanError> {
    if out.is_empty() {
        return Ok(0);
    }
    check_capacity(block.len(), out.len())?;
    let mut reader = BitReader {
        data: block,
        pos: 0,
    };
    let (tree, root) = DecodeTree::read(&mut reader)?;
    if root & LEAF != 0 {
        decode_single_symbol(&mut reader, (root & 0xff) as u8, out)?;
    } else {
        let mut single = [0u32; TABLE_SIZE];
        tree.fill_table(root, 0, 0, &mut single);
        let mut multi = [0u64; TABLE_SIZE];
        multi_symbol_table(&single, &mut multi);
        let done = decode_fast(&tree, &multi, &mut reader, out)?;
        decode_tail(&tree, &single, &mut reader, &mut out[done..], done)?;
    }
    Ok(reader.pos.div_ceil(8))
}

/// Every code is at least one bit long: a block can't hold more symbols than bits.
/// Checking this first bounds what a lying length can make a caller allocate.
pub fn check_capacity(block_len: usize, symbols: usize) -> Result<(), HuffmanError> {
    if symbols > 0 && symbols / 8 >= block_len {
        return Err(HuffmanError::TooShort {
            bytes: block_len,
            expected: symbols,
        });
    }
    Ok(())
}

/// A one-leaf tree: every symbol is the one-bit code 0.
fn decode_single_symbol(
    reader: &mut BitReader<'_>,
    symbol: u8,
    out: &mut [u8],
) -> Result<(), HuffmanError> {
    if reader.bits_left() < out.len() {
        return Err(HuffmanError::Truncated {
            decoded: reader.bits_left(),
            expected: out.len(),
        });
    }
    reader.pos += out.len();
    out.fill(symbol);
    Ok(())
}

/// Loads the bits at stream position `bitpos` for [`decode_fast`]: the bit
/// buffer (left-aligned), how many of its bits are claimed, and the next byte
/// to load. Seven whole bytes are claimed (so `avail` stays under 64); the bits
/// past them in the buffer are the stream's own, which the next refill ORs in
/// again. `None` when fewer than eight bytes are left.
#[inline(always)]
fn load_bits(data: &[u8], bitpos: usize) -> Option<(u64, u32, usize)> {
    let byte = bitpos / 8;
    let skip = (bitpos % 8) as u32;
    let word = data.get(byte..byte + 8)?;
    let buf = u64::from_be_bytes(word.try_into().expect("8 bytes")) << skip;
    Some((buf, 56 - skip, byte + 7))
}

/// The fast loop: three table look-ups (each up to four symbols) per refill.
/// Stops near the end of the block or of the output; returns symbols decoded.
fn decode_fast(
    tree: &DecodeTree,
    table: &[u64; TABLE_SIZE],
    reader: &mut BitReader<'_>,
    out: &mut [u8],
) -> Result<usize, HuffmanError> {
    let data = reader.data;
    let mut pos = 0;
    // `buf` holds `avail` valid bits, left-aligned; `next` is the first byte not
    // yet loaded, so the stream position is `8 * next - avail`.
    let Some((mut buf, mut avail, mut next)) = load_bits(data, reader.pos) else {
        return Ok(0);
    };
    // The first look-up of a round reads bits already held (avail >= TABLE_BITS), so it
    // overlaps the refill; the refill leaves at least 56 bits for three look-ups.
    while avail >= TABLE_BITS && pos + 16 <= out.len() {
        let Some(word) = data.get(next..next + 8) else {
            break;
        };
        let first = table[(buf >> (64 - TABLE_BITS)) as usize];
        buf |= u64::from_be_bytes(word.try_into().expect("8 bytes")) >> avail;
        next += ((63 - avail) / 8) as usize;
        avail |= 56;
        let mut long = None;
        let mut entry = first;
        for i in 0..3 {
            if i > 0 {
                entry = table[(buf >> (64 - TABLE_BITS)) as usize];
            }
            if entry & MULTI_COUNT_MASK == 0 {
                long = Some((entry >> 16) as u16);
                break;
            }
            out[pos..pos + 4].copy_from_slice(&((entry >> 32) as u32).to_le_bytes());
            pos += ((entry & MULTI_COUNT_MASK) >> 6) as usize;
            buf = buf.wrapping_shl(entry as u32);
            avail -= (entry & u64::from(LEN_MASK)) as u32;
        }
        if let Some(node) = long {
            reader.pos = 8 * next - avail as usize + TABLE_BITS as usize;
            out[pos] = tree.walk(node, reader).ok_or(HuffmanError::Truncated {
                decoded: pos,
                expected: out.len(),
            })?;
            pos += 1;
            match load_bits(data, reader.pos) {
                Some(loaded) => (buf, avail, next) = loaded,
                None => return Ok(pos),
            }
        }
    }
    reader.pos = 8 * next - avail as usize;
    Ok(pos)
}

/// The last symbols, one at a time, with every read checked.
fn decode_tail(
    tree: &DecodeTree,
    table: &[u32; TABLE_SIZE],
    reader: &mut BitReader<'_>,
    out: &mut [u8],
    already: usize,
) -> Result<(), HuffmanError> {
    let expected = already + out.len();
    for (i, slot) in out.iter_mut().enumerate() {
        let truncated = HuffmanError::Truncated {
            decoded: already + i,
            expected,
        };
        let entry = table[(reader.peek() >> (64 - TABLE_BITS)) as usize];
        if entry_is_long(entry) {
            if reader.bits_left() < TABLE_BITS as usize {
                return Err(truncated);
            }
            reader.pos += TABLE_BITS as usize;
            *slot = tree.walk((entry >> 8) as u16, reader).ok_or(truncated)?;
        } else {
            let len = (entry & LEN_MASK) as usize;
            if reader.bits_left() < len {
                return Err(truncated);
            }
            reader.pos += len;
            *slot = (entry >> 8) as u8;
        }
    }
    Ok(())
}

/// Decodes a block of `symbols` symbols.
pub fn decode(block: &[u8], symbols: usize) -> Result<Vec<u8>, HuffmanError> {
    check_capacity(block.len(), symbols)?;
    let mut out = vec![0u8; symbols];
    decode_into(block, &mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The block written one symbol per lookup, as the reference does.
    fn write_singly(plan: &EncodePlan, data: &[u8]) -> Vec<u8> {
        let mut dst = vec![0u8; plan.block_len()];
        let mut w = BitWriter {
            dst: &mut dst,
            pos: 0,
            acc: 0,
            nbits: 0,
        };
        plan.write_tree(&mut w);
        write_codes(&mut w, data, &plan.short_code_table());
        dst
    }

    #[test]
    fn coding_in_pairs_gives_the_same_bytes() {
        let mut rng = fastrand::Rng::with_seed(11);
        // Skewed: most bytes near 0, some rare ones (long codes), odd length.
        let data: Vec<u8> = (0..PAIRS_MIN_SYMBOLS * 2 + 13)
            .map(|_| {
                let r = rng.u32(..1 << 20);
                (r.leading_zeros() * 9 + (r & 7)) as u8
            })
            .collect();
        let plan = EncodePlan::new(&histogram(&data[..]));
        assert!(
            plan.max_len <= 28 && plan.max_len > 8,
            "max_len {}",
            plan.max_len
        );
        let mut paired = vec![0u8; plan.block_len()];
        plan.write(&data[..], &mut paired);
        assert_eq!(paired, write_singly(&plan, &data));
        assert_eq!(decode(&paired, data.len()).unwrap(), data);
    }

    #[test]
    fn round_trips_small_inputs() {
        for data in [
            &b""[..],
            b"a",
            b"aaaa",
            b"abracadabra",
            &[0, 1, 2, 3, 255, 0, 0, 0],
        ] {
            let block = encode(data);
            assert_eq!(decode(&block, data.len()).unwrap(), data);
        }
    }
}
