//! The command line: every subcommand's arguments (clap), parsing and how
//! errors are reported. Both executables parse it — `emorl`, which runs the
//! commands that need no libtorch itself, and `emorl-torch`, which runs them
//! all (see [`crate::commands`]).

use crate::train::TrainArgs;
use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "emorl",
    version,
    about = "Emotion-inspired reinforcement learning: reproduce Emotional-ED, train emotional agents",
    long_about = "Emotion-inspired reinforcement learning.\n\n\
        Emotion channels (fear, anger, regret, curiosity, joy) modulate a learner's action \
        selection, learning rate and TD target. `emorl train` runs one agent in one environment \
        and writes TensorBoard files under runs/; `emorl reproduce` regenerates a results table.",
    after_help = "Examples:\n  emorl envs\n  emorl train --env v2-threat-grid --agent emotional-ed\n  emorl reproduce v2-tabular --seeds 50\n  tensorboard --logdir runs"
)]
pub struct Cli {
    /// Log verbosity (error, warn, info, debug, trace); RUST_LOG overrides it.
    #[arg(long, global = true, default_value = "warn", value_parser = log_level)]
    pub log: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Train one agent in one environment; writes runs/<name>-<time>/.
    #[command(after_help = "Examples:\n  \
        emorl train --env v2-threat-grid --agent emotional-ed\n  \
        emorl train --env v2-blocked-path --agent frustration-ed --episodes 50 --seed 3\n  \
        emorl train --config configs/train/threat-grid.toml agent_config.lr=0.2 rng=numpy\n  \
        emorl train --env gridworld --agent fear-dqn --out runs/fd\n  \
        emorl train --out runs/fd --resume                # continue it after Ctrl-C or a crash\n\n\
        The run directory holds config.toml (the resolved configuration), metrics.jsonl,\n\
        TensorBoard event files and checkpoints/ (written every checkpoint_every episodes,\n\
        at the end and on Ctrl-C). One emorl process at a time writes a run directory.\n\
        View with: tensorboard --logdir runs")]
    Train(TrainCli),
    /// Regenerate a results table: table.md, table.json and a figure in a run directory.
    #[command(
        after_help = "Tables:\n  v2-tabular   Emotional-ED V2 Experiment 12 (fear, anger, regret, integration, transfer)\n  \
        v3           V3 fair tests, Exp 17 and 19-23 (curiosity, surprise, anger, fear transfer, anxiety, patience)\n  \
        v3-audit     each V3 emotional agent vs tuned Q-learning and an engineered non-emotional fix\n  \
        v2-dqn       Exp 16b (5x5 grid) and Exp 18 (slippery cliff): dqn, coupled fear-DQN, decoupled fear-dqn\n  \
        llm-modules  LLM emotional modules: forced-emotion effect (judge, held-out lexicon), dialogue vs baselines, fluency\n\n\
        Examples:\n  \
        emorl reproduce v2-tabular                       # upstream's table, bit for bit\n  \
        emorl reproduce v2-dqn                           # 30 seeds x 500 episodes, all cores\n  \
        emorl reproduce v2-dqn --seeds 5 --episodes 100  # a quick look\n  \
        emorl reproduce llm-modules                      # SmolLM2; 64 held-out conversations per agent\n  \
        emorl reproduce llm-modules --agents llm-base,llm-prompted,llm-erm\n  \
        emorl reproduce llm-modules --model ../shared/models/stories260k-f32.gguf --episodes 20\n  \
        emorl reproduce v2-tabular --blocks 4            # seeds 0-199 in four blocks + pooled\n  \
        emorl reproduce v2-tabular --rng fast --seed-offset 1000\n  \
        emorl reproduce v3                               # upstream's V3 numbers, bit for bit\n  \
        emorl reproduce v3-audit                         # emotion vs engineered fixes, seeds 0-199 in 4 blocks\n\n\
        Finished seeds are stored under seeds/ as they end, with the options they were\n\
        computed under; rerunning with the same --out and options resumes an interrupted\n\
        run without redoing them."
    )]
    Reproduce(ReproduceCli),
    /// Run a grid of trainings (axes of settings x seeds) here or as a Slurm job array, then one table.
    #[command(after_help = "Examples:\n  \
        emorl sweep configs/sweeps/threat-grid-lr.toml                   # all cores, then the table\n  \
        emorl sweep configs/sweeps/threat-grid-lr.toml --backend slurm   # one sbatch job array\n  \
        emorl sweep configs/sweeps/threat-grid-lr.toml --backend slurm --dry-run --partition short\n  \
        emorl sweep collect runs/sweep-threat-grid-lr                    # the table, once all runs ended\n\n\
        A sweep file names a training config (base = \"...\", relative to the sweep file, and/or\n\
        [config]), the axes ([axes] key = [values], keys as in `emorl train KEY=VALUE`), the seeds\n\
        (\"0..20\" or a list), the metrics ([[metrics]] name, key of metrics.jsonl, reduce =\n\
        tail|last|mean|max|min) and optionally a control (control = { agent = \"q-learning\" }).\n\
        Each run is `emorl train` in runs/<cell>/seed-<n>/ of the sweep directory; its result is\n\
        stored as it ends, so rerunning the same command resumes. See docs/sweeps.md.")]
    Sweep(SweepCli),
    /// Play a text environment yourself: type the assistant's replies at the terminal.
    #[command(
        after_help = "Examples:\n  emorl play --env dialogue\n  emorl play --env dialogue --seed 7 --data ../shared/data/dailydialog/dialogues_test.txt\n  emorl play --env igt\n  emorl play --env gridworld-text\n\n\
        Each turn shows the user's reply, the reward, the hidden safety score and the\n\
        emotional context. /quit stops; /feeling WORD reports how you feel."
    )]
    Play {
        /// Text environment: dialogue, igt or gridworld-text (the V2 threat grid as text).
        #[arg(long, default_value = "dialogue")]
        env: String,
        /// Random seed of the conversation.
        #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
        seed: u64,
        /// DailyDialog-format file with extra user turns.
        #[arg(long)]
        data: Option<PathBuf>,
    },
    /// Generate text with a frozen language model, streaming tokens as they come.
    #[command(after_help = "Examples:\n  \
        emorl generate --prompt \"What is the capital of France?\" --chat\n  \
        emorl generate --model ../shared/models/stories260k-f32.gguf --prompt \"Once upon a time\"\n  \
        emorl generate --prompt \"Tell me a story\" --chat --temperature 0.8 --seed 3\n\n\
        --model default is SmolLM2-135M-Instruct (Q4_1 GGUF) installed by scripts/setup.sh;\n\
        any GGUF file (Llama family) or Hugging Face GPT-2 directory also works.")]
    Generate(crate::generate::GenerateArgs),
    /// Evaluate one trained agent the way `reproduce llm-modules` does, beside llm-base and llm-prompted.
    #[command(after_help = "Examples:\n  \
        emorl eval llm --checkpoint runs/dialogue-llm-erm-<time>/checkpoints/agent\n  \
        emorl eval llm --checkpoint DIR --model ../shared/models/stories260k-f32.gguf --seeds 16\n\n\
        Writes table.md, table.json and samples.jsonl (every generated text) to a new run\n\
        directory: the forced-emotion effect (judge, held-out lexicon half, full lexicon),\n\
        dialogue return/safety/helpfulness on held-out conversations paired by seed,\n\
        fluency and appropriateness. The judge is trained on GoEmotions (--goemotions).")]
    Eval {
        #[command(subcommand)]
        what: EvalWhat,
    },
    /// Talk with a trained LLM agent; its emotion state is shown after each reply.
    #[command(after_help = "Examples:\n  \
        emorl chat --checkpoint runs/dialogue-llm-erm-<time>/checkpoints/agent\n  \
        emorl chat --checkpoint DIR --model ../shared/models/stories260k-f32.gguf\n\n\
        The checkpoint names the base model it was trained on (by hash) and where it was\n\
        loaded from; without --model that file is used (else SmolLM2-135M-Instruct).\n\
        An empty line or /quit ends.")]
    Chat {
        /// Checkpoint directory (run/checkpoints/agent of `emorl train --agent llm-*`).
        #[arg(long)]
        checkpoint: PathBuf,
        /// The base model: default, a GGUF file or a Hugging Face directory
        /// [default: the one the checkpoint records].
        #[arg(long)]
        model: Option<String>,
        /// How to hold the frozen weights (see `emorl generate --help`).
        #[arg(long, value_enum, default_value_t = crate::llm_setup::Weights::Auto)]
        weights: crate::llm_setup::Weights,
        /// Most replies before the chat ends.
        #[arg(long, default_value_t = 20, allow_negative_numbers = true)]
        max_turns: usize,
    },
    /// Print a run's resolved configuration (every key, defaults included)
    /// without running it.
    #[command(after_help = "Examples:\n  \
        emorl config show --env v2-threat-grid --agent emotional-ed\n  \
        emorl config show --env dialogue --agent llm-erm agent_config.rl.lr=0.1\n\n\
        The output is the config.toml that `emorl train` with the same arguments writes;\n\
        save it, edit it and pass it back with `emorl train --config FILE`.")]
    Config {
        #[command(subcommand)]
        what: ConfigWhat,
    },
    /// List the registered environments.
    Envs,
    /// List the registered agents.
    Agents,
    /// List the tables `emorl reproduce` regenerates, with their defaults.
    Tables,
    /// Show build information: version, libtorch, threads, CUDA.
    Info,
    /// Serve the emotion engine (neurochemical state per session) over HTTP.
    #[command(after_help = "REST API (JSON):\n  \
        GET  /v1/health                  liveness and the number of sessions\n  \
        POST /v1/sessions                a new session at baseline; body {\"id\": \"name\"} optional\n  \
        GET  /v1/sessions/ID             levels, emotions, sampling temperature, conditioning tokens\n  \
        POST /v1/sessions/ID/events      {\"feedback\": -1..1, \"novelty\": 0..1, \"threat\": 0..1, \"warmth\": 0..1, \"dt\": 1}\n  \
        POST /v1/sessions/ID/reset       back to baseline (memories are kept)\n  \
        POST /v1/sessions/ID/generate    {\"message\": \"...\", \"max_tokens\": 64, \"seed\": 0}: a reply in the session's state\n  \
        GET  /v1/sessions/ID/memory      the remembered episodes (events that carried a \"text\")\n  \
        GET  /v1/ws?session=ID           WebSocket: the state now, then every change in order\n  \
        GET  /                           the compare page: base model and emotional agent side by side\n  \
        POST /v1/compare                 {\"history\": [{\"role\": \"user\", \"content\": \"...\"}], \"target\": \"joy\"}: both replies, judged\n\n\
        Examples:\n  \
        emorl serve --port 8700 --out runs/engine\n  \
        emorl serve --engine-only --out runs/engine          # the dynamics only, no language model\n  \
        emorl serve --checkpoint runs/dialogue-llm-steer-<time>/checkpoints/agent\n  \
        curl -s -X POST localhost:8700/v1/sessions -H 'content-type: application/json' -d '{\"id\": \"alice\"}'\n  \
        curl -s -X POST localhost:8700/v1/sessions/alice/events -H 'content-type: application/json' -d '{\"threat\": 0.9}'\n  \
        curl -s -X POST localhost:8700/v1/sessions/alice/generate -H 'content-type: application/json' -d '{\"message\": \"Can you help me?\"}'\n\n\
        Every acknowledged change is stored in OUT/sessions/ (memories in OUT/memory/) first:\n\
        restarting on the same --out keeps it. Loopback only unless --token is given.")]
    Serve {
        /// Address to listen on (another than loopback needs --token; MCP at /mcp).
        #[arg(long, default_value = "127.0.0.1")]
        host: String,
        /// Port (0: any free port; the address is printed on stdout).
        #[arg(long, default_value_t = 8700)]
        port: u16,
        /// Run directory holding the sessions (kept across restarts).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Bearer token every request but /v1/health must carry.
        #[arg(long)]
        token: Option<String>,
        /// Directory under which a run directory is created without --out.
        #[arg(long, default_value = "runs")]
        runs_dir: PathBuf,
        /// The model that replies: `default` (SmolLM2-135M-Instruct), a .gguf file or a
        /// Hugging Face directory [default: with --checkpoint, the model it was trained on].
        #[arg(long, conflicts_with = "engine_only")]
        model: Option<String>,
        /// Reply with a trained LLM agent (its modules read the session's emotions).
        #[arg(long, conflicts_with = "engine_only")]
        checkpoint: Option<PathBuf>,
        /// Serve the dynamics only: no language model is loaded, generate answers 503.
        #[arg(long)]
        engine_only: bool,
        /// How to hold the frozen weights (see `emorl generate --help`).
        #[arg(long, value_enum, default_value_t = crate::llm_setup::Weights::Auto)]
        weights: crate::llm_setup::Weights,
        /// Most replies generated together in one batch.
        #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=64))]
        batch: u64,
        /// How long the first reply of a batch waits for others (milliseconds).
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(0..=10_000))]
        batch_wait_ms: u64,
        /// Most requests waiting for the model; more are answered 503.
        #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=4096))]
        queue: u64,
        /// libtorch threads for generation (0: all cores).
        #[arg(long, default_value_t = 0)]
        threads: usize,
        /// GoEmotions folder for the judge that scores /v1/compare's replies
        /// [default: $EMORL_GOEMOTIONS_DIR, else shared/data/goemotions].
        #[arg(long, value_name = "DIR")]
        goemotions: Option<PathBuf>,
    },
    /// The emotion engine's MCP tools (get_emotional_state, update_emotion) over stdio.
    #[command(
        after_help = "An MCP client configuration (e.g. an IDE's mcp.json):\n\n  \
        {\"mcpServers\": {\"emorl\": {\"command\": \"emorl\", \"args\": [\"mcp\", \"--out\", \"/path/to/runs/engine\"]}}}\n\n\
        Over HTTP instead, `emorl serve` answers MCP at http://HOST:PORT/mcp (streamable HTTP):\n\n  \
        {\"mcpServers\": {\"emorl\": {\"url\": \"http://127.0.0.1:8700/mcp\"}}}\n\n\
        Both use the sessions stored in --out (the same as `emorl serve --out`; run one\n\
        process per directory). Without a session name the tools use \"default\"."
    )]
    Mcp {
        /// Run directory holding the sessions (shared with `emorl serve --out`).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Directory under which a run directory is created without --out.
        #[arg(long, default_value = "runs")]
        runs_dir: PathBuf,
    },
}

#[derive(Subcommand)]
pub enum ConfigWhat {
    /// The configuration `emorl train` would run with these arguments, as TOML.
    Show {
        #[command(flatten)]
        run: RunSpec,
        /// Config overrides as key=value.
        #[arg(value_name = "KEY=VALUE")]
        overrides: Vec<String>,
    },
}

/// What a run is: the arguments `train` and `config show` share.
#[derive(Args)]
pub struct RunSpec {
    /// Environment ID (see `emorl envs`).
    #[arg(long)]
    pub env: Option<String>,
    /// Agent ID (see `emorl agents`).
    #[arg(long)]
    pub agent: Option<String>,
    /// Experiment TOML file; flags and overrides take precedence over it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Random seed.
    #[arg(long, allow_negative_numbers = true)]
    pub seed: Option<u64>,
    /// Number of training episodes; for llm-* agents the number of RL
    /// updates (`--updates` says the same).
    #[arg(long, visible_alias = "updates", allow_negative_numbers = true)]
    pub episodes: Option<usize>,
    /// Frozen language model of an llm-* agent: default (SmolLM2-135M-Instruct),
    /// a GGUF file or a Hugging Face directory (same as agent_config.model=PATH).
    #[arg(long)]
    pub model: Option<String>,
    /// Where an llm-* agent's emotion comes from: its learned encoder, or
    /// the neurochemical dynamics of the emotion engine (same as
    /// agent_config.agent.emotion_source=neuro).
    #[arg(long, value_parser = ["encoder", "neuro"])]
    pub emotion_source: Option<String>,
}

impl RunSpec {
    /// The library's arguments (`--model` becomes the first override).
    pub fn into_args(
        self,
        mut overrides: Vec<String>,
        out: Option<PathBuf>,
        out_root: PathBuf,
        resume: bool,
    ) -> TrainArgs {
        if let Some(m) = self.model {
            overrides.insert(0, format!("agent_config.model={}", toml_string(&m)));
        }
        if let Some(s) = self.emotion_source {
            overrides.insert(
                0,
                format!("agent_config.agent.emotion_source={}", toml_string(&s)),
            );
        }
        TrainArgs {
            env: self.env,
            agent: self.agent,
            config: self.config,
            seed: self.seed,
            episodes: self.episodes,
            out,
            out_root,
            overrides,
            resume,
        }
    }
}

#[derive(Args)]
pub struct TrainCli {
    #[command(flatten)]
    pub run: RunSpec,
    /// Write the run exactly into this directory, which must be new or empty
    /// (default: runs/<name>-<time>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue the run in --out from its last checkpoint (tabular, DQN and
    /// LLM agents), with its stored configuration; --episodes may raise its length.
    #[arg(long)]
    pub resume: bool,
    /// Directory under which run directories are created.
    #[arg(long, default_value = "runs")]
    pub runs_dir: PathBuf,
    /// Config overrides as key=value (e.g. agent_config.lr=0.2 max_steps=50).
    #[arg(value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
}

#[derive(Subcommand)]
pub enum EvalWhat {
    /// A trained LLM agent (a checkpoint of `emorl train --env dialogue`).
    Llm {
        /// The checkpoint directory (`<run>/checkpoints/agent`).
        #[arg(long)]
        checkpoint: PathBuf,
        /// The base model the checkpoint was trained on [default: the one it
        /// records, else SmolLM2-135M-Instruct].
        #[arg(long)]
        model: Option<String>,
        /// Hold the frozen weights in bfloat16.
        #[arg(long)]
        bf16: bool,
        /// Held-out conversations (paired by seed across the agents).
        #[arg(long, default_value_t = 64, allow_negative_numbers = true)]
        seeds: usize,
        /// First held-out conversation (after 1 000 000).
        #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
        seed_offset: u64,
        /// TOML merged over configs/llm/modules.toml ([markers], [agent_config]).
        #[arg(long)]
        config: Option<PathBuf>,
        /// GoEmotions directory the judge is trained on.
        #[arg(long)]
        goemotions: Option<PathBuf>,
        /// Write the results into this new directory.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Directory under which run directories are created.
        #[arg(long, default_value = "runs")]
        runs_dir: PathBuf,
    },
}

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct SweepCli {
    #[command(subcommand)]
    pub action: Option<SweepAction>,
    /// Sweep file (TOML).
    #[arg(required = true)]
    pub file: Option<PathBuf>,
    /// Runs at a time (local backend; 0 = one per core).
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub jobs: usize,
    /// Sweep directory [default: <runs-dir>/sweep-<name>]; the same directory resumes.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Parent of the default sweep directory.
    #[arg(long, default_value = "runs")]
    pub runs_dir: PathBuf,
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Runs per array task [default: 1]; short runs are cheaper in chunks.
    #[arg(long, allow_negative_numbers = true)]
    pub runs_per_task: Option<usize>,
}

/// Where a command's runs execute, and Slurm's settings (`sweep`, `reproduce`).
#[derive(Args)]
pub struct ClusterArgs {
    /// Where the runs execute: local (this machine) or slurm (an sbatch job array).
    #[arg(long, value_enum, default_value = "local")]
    pub backend: crate::cluster::Backend,
    /// Slurm: write and print the job script without submitting it.
    #[arg(long)]
    pub dry_run: bool,
    /// Slurm partition.
    #[arg(long)]
    pub partition: Option<String>,
    /// Slurm time limit per array task, e.g. 00:30:00.
    #[arg(long)]
    pub time: Option<String>,
    /// Slurm CPUs per array task (also its parallel runs).
    #[arg(long, allow_negative_numbers = true)]
    pub cpus_per_task: Option<u32>,
    /// Slurm memory per array task, e.g. 2G.
    #[arg(long)]
    pub mem: Option<String>,
    /// Most array tasks in one submission [default: 1000].
    #[arg(long, allow_negative_numbers = true)]
    pub max_array: Option<usize>,
}

impl ClusterArgs {
    /// The Slurm submission these flags ask for (`runs_per_task`: the
    /// command's own chunking, if it has one).
    pub fn submission(&self, runs_per_task: Option<usize>) -> crate::cluster::Submission {
        crate::cluster::Submission {
            options: crate::cluster::SlurmOptions {
                partition: self.partition.clone(),
                time: self.time.clone(),
                cpus_per_task: self.cpus_per_task,
                mem: self.mem.clone(),
                max_array: self.max_array,
                runs_per_task,
            },
            dry_run: self.dry_run,
        }
    }
}

#[derive(Subcommand)]
pub enum SweepAction {
    /// Build table.md, table.json and the figure of a sweep whose runs have all ended.
    Collect {
        /// The sweep directory.
        dir: PathBuf,
    },
    /// Run one Slurm array task's share of a submitted sweep (the job script calls this).
    RunTask {
        /// The sweep directory.
        dir: PathBuf,
        /// Array task index ($SLURM_ARRAY_TASK_ID).
        #[arg(long, allow_negative_numbers = true)]
        task: usize,
        /// Runs at a time [default: $SLURM_CPUS_PER_TASK, else 1].
        #[arg(long, allow_negative_numbers = true)]
        jobs: Option<usize>,
    },
}

#[derive(Args)]
pub struct ReproduceCli {
    /// Table ID: v2-tabular, v3, v3-audit, v2-dqn or llm-modules (`emorl tables` lists them).
    pub table: String,
    /// With --backend slurm: one array task per seed block (llm-modules: per
    /// agent); the same command without it then builds the table from what
    /// the tasks stored.
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Compute only this seed block's seeds (llm-modules: the N-th agent of
    /// --agents) and store them, no table (what each Slurm array task runs).
    #[arg(long, allow_negative_numbers = true)]
    pub block: Option<usize>,
    /// Seeds per block [default: 50 for v2-tabular, v3 and v3-audit, 30 for
    /// v2-dqn, 64 held-out conversations for llm-modules].
    #[arg(long, allow_negative_numbers = true)]
    pub seeds: Option<usize>,
    /// First seed.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub seed_offset: u64,
    /// Number of consecutive seed blocks (tabular tables: each gets its own
    /// row and a pooled row is added; v2-dqn pools them) [default: 4 for
    /// v3-audit, else 1].
    #[arg(long, allow_negative_numbers = true)]
    pub blocks: Option<usize>,
    /// Random-number generator: numpy (bit-exact with upstream) or fast
    /// [default: numpy for v2-tabular, v3 and v3-audit, fast for v2-dqn].
    #[arg(long)]
    pub rng: Option<emorl_core::RngKind>,
    /// Permutations of the permutation test.
    #[arg(long, default_value_t = 1000, allow_negative_numbers = true)]
    pub permutations: usize,
    /// Training episodes per run (v2-dqn; default: the protocol's 500), or
    /// RL updates per agent (llm-modules; default 12; `--updates` says the same).
    #[arg(long, visible_alias = "updates", allow_negative_numbers = true)]
    pub episodes: Option<usize>,
    /// Frozen model for llm-modules: default (SmolLM2-135M-Instruct), a GGUF
    /// file or a Hugging Face directory.
    #[arg(long)]
    pub model: Option<String>,
    /// TOML merged over the embedded experiment (llm-modules:
    /// configs/llm/modules.toml; v3-audit: configs/v3/audit.toml; v2-dqn:
    /// configs/v2/dqn.toml).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Measure only these agents (llm-modules; comma-separated IDs, e.g.
    /// llm-base,llm-prompted,llm-erm).
    #[arg(long)]
    pub agents: Option<String>,
    /// GoEmotions directory the judge is trained on (llm-modules) [default:
    /// $EMORL_GOEMOTIONS_DIR, or shared/data/goemotions beside the working directory].
    #[arg(long)]
    pub goemotions: Option<PathBuf>,
    /// Worker threads (0 = all cores; more than the cores are capped at them).
    #[arg(long, short = 'j', default_value_t = 0, allow_negative_numbers = true)]
    pub jobs: usize,
    /// Write the run exactly into this directory (resumes an interrupted run made with
    /// the same options; one emorl process at a time).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Directory under which run directories are created.
    #[arg(long, default_value = "runs")]
    pub runs_dir: PathBuf,
}

pub fn init_tracing(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    // Colour codes only for a terminal: a redirected log stays plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .init();
}

/// The error and its causes on one line, joined by ": ", leaving out causes
/// whose text the message already contains (library errors often embed them).
pub fn one_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string().replace('\n', " ");
        if !line.contains(&text) {
            if !line.is_empty() {
                line.push_str(": ");
            }
            line.push_str(&text);
        }
    }
    line
}

/// `--log`: a level, or `tracing` directives such as `emorl=debug` (a bare
/// word would be taken as a target name and silently log nothing).
pub fn log_level(s: &str) -> std::result::Result<String, String> {
    const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];
    if LEVELS.contains(&s.to_ascii_lowercase().as_str())
        || (s.contains('=') && tracing_subscriber::EnvFilter::try_new(s).is_ok())
    {
        Ok(s.to_string())
    } else {
        Err(format!(
            "expected one of {} or target=level directives",
            LEVELS.join(", ")
        ))
    }
}

/// A clap usage error as one line (clap prints the problem, tips and the
/// usage over several).
pub fn clap_one_line(e: &clap::Error) -> String {
    let rendered = e.render().to_string();
    let mut parts: Vec<&str> = Vec::new();
    for line in rendered.lines().map(str::trim) {
        if line.starts_with("Usage:") || line.starts_with("For more information") {
            break;
        }
        if !line.is_empty() && !line.starts_with("tip:") {
            parts.push(line);
        }
    }
    format!("{} (see --help)", parts.join(" "))
}

/// Parses the command line; on a usage error prints it on one line and
/// returns the exit code (help and version print and exit here).
pub fn parse() -> std::result::Result<Cli, ExitCode> {
    // Output piped into `head` and closed: end quietly, as other command-line
    // tools do, instead of panicking on the failed write.
    #[cfg(unix)]
    // SAFETY: restoring the default action of SIGPIPE before any thread is
    // started touches no Rust state.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    match Cli::try_parse() {
        Ok(cli) => {
            init_tracing(&cli.log);
            Ok(cli)
        }
        Err(e) => {
            use clap::error::ErrorKind;
            match e.kind() {
                ErrorKind::DisplayHelp
                | ErrorKind::DisplayVersion
                | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => e.exit(),
                _ => {
                    eprintln!("{}", clap_one_line(&e));
                    Err(ExitCode::from(2))
                }
            }
        }
    }
}

/// The exit code of a finished command, its error printed on one line.
pub fn exit_code(result: Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.is::<crate::interrupt::Interrupted>() => {
            eprintln!("{e}");
            ExitCode::from(crate::interrupt::EXIT_CODE)
        }
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            ExitCode::from(2)
        }
    }
}

/// A TOML string literal (for turning a flag into a key=value override).
pub fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}
