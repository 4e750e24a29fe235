//! Shared pieces of the grid environments: positions, moves, distances, drawing.

/// `(row, col)`; row 0 is the top row.
pub type Pos = (i32, i32);

/// Action order of every Emotional-ED grid: 0 up, 1 down, 2 left, 3 right.
pub const MOVES: [Pos; 4] = [(-1, 0), (1, 0), (0, -1), (0, 1)];

/// Names of the four moves, in action order.
pub const MOVE_NAMES: [&str; 4] = ["up", "down", "left", "right"];

/// The move of `action`, `(0, 0)` for an index outside `0..4`.
pub fn delta(action: usize) -> Pos {
    MOVES.get(action).copied().unwrap_or((0, 0))
}

/// Euclidean distance: one correctly rounded sqrt of an exact integer (as numpy's norm).
pub fn euclid(a: Pos, b: Pos) -> f64 {
    let dr = (a.0 - b.0) as f64;
    let dc = (a.1 - b.1) as f64;
    (dr * dr + dc * dc).sqrt()
}

pub fn manhattan(a: Pos, b: Pos) -> f64 {
    ((a.0 - b.0).abs() + (a.1 - b.1).abs()) as f64
}

pub fn inside(p: Pos, rows: i32, cols: i32) -> bool {
    p.0 >= 0 && p.0 < rows && p.1 >= 0 && p.1 < cols
}

pub fn index(p: Pos, cols: i32) -> usize {
    (p.0 * cols + p.1) as usize
}

/// Draws a grid: `cell(pos)` gives each cell's character, `A` marks the agent.
pub fn draw(rows: i32, cols: i32, agent: Pos, cell: impl Fn(Pos) -> char) -> String {
    let mut s = String::with_capacity(((cols * 2 + 1) * rows) as usize);
    for r in 0..rows {
        for c in 0..cols {
            if c > 0 {
                s.push(' ');
            }
            s.push(if (r, c) == agent { 'A' } else { cell((r, c)) });
        }
        s.push('\n');
    }
    s
}

/// Features of a grid cell for function approximation: normalised row and column.
pub fn position_features(p: Pos, rows: i32, cols: i32) -> Vec<f32> {
    vec![p.0 as f32 / rows as f32, p.1 as f32 / cols as f32]
}

/// Features of state `state` of a square grid: normalised row and column,
/// then the Euclidean distance to each landmark divided by 10.
pub fn cell_features(state: usize, size: i32, landmarks: &[Pos]) -> Vec<f32> {
    let p = (state as i32 / size, state as i32 % size);
    let mut f = position_features(p, size, size);
    f.extend(landmarks.iter().map(|&l| euclid(p, l) as f32 / 10.0));
    f
}
