//! A simulated sCMOS camera, shared by `demo` and `bench --pattern camera`.

/// A simulated sCMOS camera: a dark level of 100 counts plus Poisson photon
/// noise around 50, and a few bright moving spots. Frames are deterministic
/// in their number, so they can be checked after the fact without keeping them.
pub struct Camera {
    width: u32,
    height: u32,
    noise: Vec<u16>,
}

impl Camera {
    pub fn new(width: u32, height: u32) -> Camera {
        let mut rng = fastrand::Rng::with_seed(2026);
        let pixels = (width * height) as usize;
        let noise = (0..pixels + 65_536)
            .map(|_| 100 + poisson(&mut rng, 50.0))
            .collect();
        Camera {
            width,
            height,
            noise,
        }
    }

    pub fn frame_bytes(&self) -> usize {
        (self.width * self.height) as usize * 2
    }

    /// The little-endian uint16 pixels of frame `number`, row-major.
    pub fn frame(&self, number: u32) -> Vec<u8> {
        let pixels = (self.width * self.height) as usize;
        let offset = (number as usize).wrapping_mul(7919) % 65_536;
        let mut frame = self.noise[offset..offset + pixels].to_vec();
        for spot in 0..8u32 {
            let x = (spot * 131 + number * 3) % self.width;
            let y = (spot * 71 + number) % self.height;
            let i = (y * self.width + x) as usize;
            frame[i] = frame[i].saturating_add(1500);
        }
        frame.iter().flat_map(|pixel| pixel.to_le_bytes()).collect()
    }
}

/// Knuth's method: fine for a mean of 50, and deterministic with a seeded rng.
fn poisson(rng: &mut fastrand::Rng, mean: f64) -> u16 {
    let limit = (-mean).exp();
    let mut product = rng.f64();
    let mut count = 0;
    while product > limit {
        product *= rng.f64();
        count += 1;
    }
    count
}
