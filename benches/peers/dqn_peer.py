"""CleanRL-style DQN on the Exp 16b grid: the Python peer of emorl's Rust DQN.

Same environment (5x5, clamped moves, terminal threat at (2,2) -1, goal (4,4) +1,
-0.01 otherwise, 100-step cap, features [row/5, col/5, manhattan(threat)/10,
manhattan(goal)/10]), same network (4-64-64-4 MLP, ReLU), same hyperparameters
(Adam 1e-3, gamma 0.99, replay 10k, batch 64 without replacement, one update per
step from 64 stored transitions, hard target copy every 100 updates, epsilon 0.1,
MSE). One torch thread. Prints env steps per second in the same format as the
Rust example `dqn_sps`.

    python dqn_peer.py --total-steps 20000 --seed 0
"""

import argparse
import random
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class Args:
    seed: int = 0
    total_steps: int = 20_000
    learning_rate: float = 1e-3
    buffer_size: int = 10_000
    gamma: float = 0.99
    target_network_frequency: int = 100
    batch_size: int = 64
    epsilon: float = 0.1
    learning_starts: int = 64
    max_steps: int = 100


class GridWorld:
    """Upstream GridWorldGPU(size=5)."""

    MOVES = [(-1, 0), (1, 0), (0, -1), (0, 1)]
    SIZE, GOAL, THREAT = 5, (4, 4), (2, 2)

    def reset(self):
        self.pos = (0, 0)
        return self.features()

    def features(self):
        r, c = self.pos
        return np.array(
            [r / 5, c / 5, (abs(r - 2) + abs(c - 2)) / 10, (abs(r - 4) + abs(c - 4)) / 10],
            dtype=np.float32,
        )

    def step(self, action):
        dr, dc = self.MOVES[action]
        r = min(max(self.pos[0] + dr, 0), self.SIZE - 1)
        c = min(max(self.pos[1] + dc, 0), self.SIZE - 1)
        self.pos = (r, c)
        if self.pos == self.GOAL:
            return self.features(), 1.0, True
        if self.pos == self.THREAT:
            return self.features(), -1.0, True
        return self.features(), -0.01, False


class QNetwork(nn.Module):
    def __init__(self, n_in=4, n_out=4, hidden=64):
        super().__init__()
        self.network = nn.Sequential(
            nn.Linear(n_in, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, n_out)
        )

    def forward(self, x):
        return self.network(x)


class ReplayBuffer:
    def __init__(self, capacity, n_features, rng):
        self.s = np.zeros((capacity, n_features), np.float32)
        self.s2 = np.zeros((capacity, n_features), np.float32)
        self.a = np.zeros((capacity, 1), np.int64)
        self.r = np.zeros(capacity, np.float32)
        self.d = np.zeros(capacity, np.float32)
        self.capacity, self.len, self.head, self.rng = capacity, 0, 0, rng

    def add(self, s, a, r, s2, d):
        i = self.head
        self.s[i], self.a[i, 0], self.r[i], self.s2[i], self.d[i] = s, a, r, s2, d
        self.head = (self.head + 1) % self.capacity
        self.len = min(self.len + 1, self.capacity)

    def sample(self, k):
        idx = self.rng.choice(self.len, k, replace=False)
        return (
            torch.from_numpy(self.s[idx]),
            torch.from_numpy(self.a[idx]),
            torch.from_numpy(self.r[idx]),
            torch.from_numpy(self.s2[idx]),
            torch.from_numpy(self.d[idx]),
        )


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--total-steps", type=int, default=Args.total_steps)
    p.add_argument("--seed", type=int, default=Args.seed)
    cli = p.parse_args()
    args = Args(seed=cli.seed, total_steps=cli.total_steps)

    torch.set_num_threads(1)
    random.seed(args.seed)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)

    env = GridWorld()
    q_network = QNetwork()
    optimizer = torch.optim.Adam(q_network.parameters(), lr=args.learning_rate)
    target_network = QNetwork()
    target_network.load_state_dict(q_network.state_dict())
    rb = ReplayBuffer(args.buffer_size, 4, rng)

    start = time.time()
    obs, ep_return, ep_len, updates = env.reset(), 0.0, 0, 0
    returns = []
    for global_step in range(args.total_steps):
        if random.random() < args.epsilon:
            action = random.randrange(4)
        else:
            with torch.no_grad():
                action = int(torch.argmax(q_network(torch.from_numpy(obs).unsqueeze(0)), dim=1).item())
        next_obs, reward, done = env.step(action)
        rb.add(obs, action, reward, next_obs, float(done))
        ep_return += reward
        ep_len += 1
        obs = next_obs
        if done or ep_len >= args.max_steps:
            returns.append(ep_return)
            obs, ep_return, ep_len = env.reset(), 0.0, 0

        if rb.len >= args.learning_starts:
            s, a, r, s2, d = rb.sample(args.batch_size)
            with torch.no_grad():
                target_max, _ = target_network(s2).max(dim=1)
                td_target = r + args.gamma * target_max * (1 - d)
            old_val = q_network(s).gather(1, a).squeeze(1)
            loss = F.mse_loss(td_target, old_val)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            updates += 1
            if updates % args.target_network_frequency == 0:
                target_network.load_state_dict(q_network.state_dict())

    secs = time.time() - start
    tail = returns[-20:]
    last20 = sum(tail) / max(len(tail), 1)
    print(
        f"sps={args.total_steps / secs:.1f} steps={args.total_steps} episodes={len(returns)} "
        f"secs={secs:.3f} mean_return_last20={last20:.3f}"
    )


if __name__ == "__main__":
    main()
