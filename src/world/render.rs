//! Draws a [`Content`] to a 48×48 RGB image.
//!
//! 48×48 is exactly the vision tower's input, so no resizing blurs the picture, and it cuts into
//! 6×6 patches of 8×8 pixels. Objects are 12–14 px (small) or 20–22 px (large) wide and creatures
//! 26–30 px, so every object spans several patches and its outline is visible inside them.
//! `variant` seeds everything that must not change the answer to any question: exact positions,
//! sizes within their class, colour jitter, background tint and gradient, and pixel grain. Two
//! renders of the same content are therefore an "image rephrase" in MMEdit's sense.

use image::{Rgb, RgbImage};

use super::rng::WorldRng;
use super::scene::{Body, Colour, Content, Look, Pattern, Position, Scene, Shape, Size};

/// Width and height of every rendered image.
pub const IMAGE_SIZE: u32 = 48;

/// Renders `content`; the same (`content`, `variant`) always gives the same pixels.
pub fn render(content: &Content, variant: u64) -> RgbImage {
    let mut rng = WorldRng::derive(variant, "render", 0);
    let mut canvas = Canvas::background(&mut rng);
    match content {
        Content::Scene(scene) => draw_scene(&mut canvas, scene, &mut rng),
        Content::Creature { look, .. } => draw_creature(&mut canvas, look, &mut rng),
    }
    canvas.add_grain(&mut rng, 4);
    canvas.into_image()
}

/// Signed working pixels, clamped to u8 only at the end.
struct Canvas {
    pixels: Vec<[i32; 3]>,
}

impl Canvas {
    /// A light, tinted background with a gentle linear gradient.
    fn background(rng: &mut WorldRng) -> Canvas {
        let grey = rng.range_i32(198, 226);
        let tint: [i32; 3] = [
            rng.range_i32(-8, 8),
            rng.range_i32(-8, 8),
            rng.range_i32(-8, 8),
        ];
        let gx = rng.range_i32(-8, 8);
        let gy = rng.range_i32(-8, 8);
        let n = IMAGE_SIZE as i32;
        let mut pixels = Vec::with_capacity((n * n) as usize);
        for y in 0..n {
            for x in 0..n {
                let shade = (gx * (2 * x - n + 1) + gy * (2 * y - n + 1)) / (2 * n);
                pixels.push([
                    grey + tint[0] + shade,
                    grey + tint[1] + shade,
                    grey + tint[2] + shade,
                ]);
            }
        }
        Canvas { pixels }
    }

    /// Paints every pixel whose centre lies inside `region` (coordinates relative to the image).
    fn fill(&mut self, colour: [i32; 3], region: impl Fn(f32, f32) -> bool) {
        let n = IMAGE_SIZE as usize;
        for y in 0..n {
            for x in 0..n {
                if region(x as f32 + 0.5, y as f32 + 0.5) {
                    if let Some(p) = self.pixels.get_mut(y * n + x) {
                        *p = colour;
                    }
                }
            }
        }
    }

    /// Grain: a random brightness offset per 2×2 block. Per-pixel noise would triple the PNG
    /// size of every dataset image for no gain in variety; block grain compresses well.
    fn add_grain(&mut self, rng: &mut WorldRng, amplitude: i32) {
        const BLOCK: usize = 2;
        let n = IMAGE_SIZE as usize;
        let blocks = n.div_ceil(BLOCK);
        let offsets: Vec<i32> = (0..blocks * blocks)
            .map(|_| rng.range_i32(-amplitude, amplitude))
            .collect();
        for (i, p) in self.pixels.iter_mut().enumerate() {
            let (x, y) = (i % n, i / n);
            let offset = offsets
                .get((y / BLOCK) * blocks + x / BLOCK)
                .copied()
                .unwrap_or(0);
            for c in p.iter_mut() {
                *c += offset;
            }
        }
    }

    fn into_image(self) -> RgbImage {
        let n = IMAGE_SIZE;
        let mut image = RgbImage::new(n, n);
        for (i, p) in self.pixels.iter().enumerate() {
            let (x, y) = (i as u32 % n, i as u32 / n);
            image.put_pixel(x, y, Rgb(p.map(|c| c.clamp(0, 255) as u8)));
        }
        image
    }
}

/// The colour with a per-render jitter of ±10 per channel.
fn jittered(colour: Colour, rng: &mut WorldRng) -> [i32; 3] {
    colour.rgb().map(|c| i32::from(c) + rng.range_i32(-10, 10))
}

fn darker(rgb: [i32; 3]) -> [i32; 3] {
    rgb.map(|c| c * 11 / 20)
}

/// Whether the point (dx, dy) from an object's centre lies inside `shape` of half-width `h`.
fn inside_shape(shape: Shape, dx: f32, dy: f32, h: f32) -> bool {
    match shape {
        Shape::Circle => dx * dx + dy * dy <= h * h,
        Shape::Square => dx.abs() <= 0.88 * h && dy.abs() <= 0.88 * h,
        Shape::Triangle => dy >= -h && dy <= h && dx.abs() <= (dy + h) / 2.0,
        Shape::Diamond => dx.abs() + dy.abs() <= h,
        Shape::Cross => {
            let arm = h / 3.0;
            (dx.abs() <= arm && dy.abs() <= h) || (dy.abs() <= arm && dx.abs() <= h)
        }
    }
}

fn draw_scene(canvas: &mut Canvas, scene: &Scene, rng: &mut WorldRng) {
    let colour = jittered(scene.colour, rng);
    let (width, jitter_one, jitter_many) = match scene.size {
        Size::Small => (rng.range_i32(12, 14), 1, 1),
        Size::Large => (rng.range_i32(20, 22), 1, 1),
    };
    let h = width as f32 / 2.0;
    let centres: Vec<(i32, i32)> = match scene.position {
        Some(position) => {
            let (x, y) = match position {
                Position::Left => (12, 24),
                Position::Right => (36, 24),
                Position::Top => (24, 12),
                Position::Bottom => (24, 36),
                Position::Center => (24, 24),
            };
            vec![(
                x + rng.range_i32(-jitter_one, jitter_one),
                y + rng.range_i32(-jitter_one, jitter_one),
            )]
        }
        None => {
            let mut cells = [(12, 12), (36, 12), (12, 36), (36, 36)];
            rng.shuffle(&mut cells);
            cells
                .iter()
                .take(scene.count.get())
                .map(|&(x, y)| {
                    (
                        x + rng.range_i32(-jitter_many, jitter_many),
                        y + rng.range_i32(-jitter_many, jitter_many),
                    )
                })
                .collect()
        }
    };
    for (cx, cy) in centres {
        let (cx, cy) = (cx as f32, cy as f32);
        canvas.fill(colour, |x, y| inside_shape(scene.shape, x - cx, y - cy, h));
    }
}

/// Whether (dx, dy) lies inside a creature's body of half-width `h`.
fn inside_body(body: Body, dx: f32, dy: f32, h: f32) -> bool {
    match body {
        Body::Blob => (dx / h).powi(2) + (dy / (0.85 * h)).powi(2) <= 1.0,
        Body::Block => dx.abs() <= 0.85 * h && dy.abs() <= 0.8 * h,
        Body::Cone => inside_shape(Shape::Triangle, dx, dy, h),
        Body::Kite => inside_shape(Shape::Diamond, dx, dy, h),
    }
}

fn draw_creature(canvas: &mut Canvas, look: &Look, rng: &mut WorldRng) {
    let colour = jittered(look.colour, rng);
    let h = rng.range_i32(13, 15) as f32;
    let cx = (24 + rng.range_i32(-3, 3)) as f32;
    let cy = (25 + rng.range_i32(-3, 3)) as f32;
    let body = look.body;
    canvas.fill(colour, |x, y| inside_body(body, x - cx, y - cy, h));

    let mark = darker(colour);
    match look.pattern {
        Pattern::Plain => {}
        Pattern::Stripes => {
            let phase = rng.range_i32(0, 5) as f32;
            canvas.fill(mark, |x, y| {
                let (dx, dy) = (x - cx, y - cy);
                inside_body(body, dx, dy, h) && ((dy + h + phase) / 3.0).floor() as i32 % 2 == 0
            });
        }
        Pattern::Spots => {
            for (sx, sy) in [(-0.3, 0.2), (0.3, 0.2), (0.0, 0.5)] {
                let (px, py) = (cx + sx * h, cy + sy * h);
                canvas.fill(mark, |x, y| (x - px).powi(2) + (y - py).powi(2) <= 5.0);
            }
        }
    }

    // Eyes make a creature unmistakable for a scene object; on a cone they sit lower, where the
    // body is wide enough to hold them.
    let eye_y = cy
        + match body {
            Body::Cone => 0.15 * h,
            _ => -0.3 * h,
        };
    for side in [-1.0f32, 1.0] {
        let ex = cx + side * 0.33 * h;
        canvas.fill([253, 253, 253], |x, y| {
            (x - ex).powi(2) + (y - eye_y).powi(2) <= 5.3
        });
        canvas.fill([20, 20, 20], |x, y| {
            (x - ex).powi(2) + (y - eye_y).powi(2) <= 1.3
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::world::scene::{Count, Look};

    fn scene(count: Count, position: Option<Position>, size: Size) -> Scene {
        Scene {
            shape: Shape::Square,
            colour: Colour::Blue,
            size,
            count,
            position,
        }
    }

    /// Pixels whose blue channel dominates: the object's pixels in a blue scene.
    fn blue_pixels(image: &RgbImage) -> Vec<(u32, u32)> {
        image
            .enumerate_pixels()
            .filter(|(_, _, p)| i32::from(p[2]) - i32::from(p[0]) > 80)
            .map(|(x, y, _)| (x, y))
            .collect()
    }

    #[test]
    fn same_variant_same_pixels_other_variant_other_pixels() {
        let content = Content::Scene(scene(Count::Two, None, Size::Small));
        let a = render(&content, 5);
        assert_eq!(a, render(&content, 5));
        assert_ne!(a, render(&content, 6));
        assert_eq!(a.dimensions(), (IMAGE_SIZE, IMAGE_SIZE));
    }

    #[test]
    fn single_object_sits_in_its_region() {
        for (position, (ex, ey)) in [
            (Position::Left, (12.0, 24.0)),
            (Position::Right, (36.0, 24.0)),
            (Position::Top, (24.0, 12.0)),
            (Position::Bottom, (24.0, 36.0)),
            (Position::Center, (24.0, 24.0)),
        ] {
            for variant in 0..20 {
                let content = Content::Scene(scene(Count::One, Some(position), Size::Large));
                let px = blue_pixels(&render(&content, variant));
                let n = px.len() as f32;
                let mx = px.iter().map(|p| p.0 as f32 + 0.5).sum::<f32>() / n;
                let my = px.iter().map(|p| p.1 as f32 + 0.5).sum::<f32>() / n;
                assert!(
                    (mx - ex).abs() <= 2.0 && (my - ey).abs() <= 2.0,
                    "{position:?}: {mx},{my}"
                );
            }
        }
    }

    #[test]
    fn sizes_never_overlap_in_area() {
        let mut small_max = 0;
        let mut large_min = usize::MAX;
        for variant in 0..30 {
            let s = blue_pixels(&render(
                &Content::Scene(scene(Count::One, Some(Position::Center), Size::Small)),
                variant,
            ));
            let l = blue_pixels(&render(
                &Content::Scene(scene(Count::One, Some(Position::Center), Size::Large)),
                variant,
            ));
            small_max = small_max.max(s.len());
            large_min = large_min.min(l.len());
        }
        assert!(small_max * 2 < large_min, "{small_max} vs {large_min}");
    }

    #[test]
    fn objects_do_not_touch_each_other_or_leave_the_image() {
        // The same variant draws the same width, so four large squares cover exactly four times
        // one square's pixels unless they overlap or are clipped at the border.
        for variant in 0..20 {
            let one = blue_pixels(&render(
                &Content::Scene(scene(Count::One, Some(Position::Center), Size::Large)),
                variant,
            ))
            .len();
            let four = blue_pixels(&render(
                &Content::Scene(scene(Count::Four, None, Size::Large)),
                variant,
            ))
            .len();
            assert_eq!(four, 4 * one, "variant {variant}");
        }
    }

    #[test]
    fn background_never_reaches_eye_white() {
        for variant in 0..50 {
            let image = render(
                &Content::Scene(scene(Count::Two, None, Size::Small)),
                variant,
            );
            assert!(image.pixels().all(|p| p.0.iter().any(|&c| c < 248)));
        }
    }

    #[test]
    fn creatures_have_white_eyes() {
        for look in Look::all() {
            let image = render(&Content::Creature { entity: 0, look }, 9);
            let white = image
                .pixels()
                .filter(|p| p.0.iter().all(|&c| c >= 248))
                .count();
            assert!(white >= 8, "{look:?}: {white}");
        }
    }
}
