"""The one training loop every method runs in.

It knows phases, not methods: per iteration it runs each phase of the method ``steps`` times
(backward, clip, optimizer step), then steps that phase's schedule. Around that: Fabric for
devices, precision and DDP; evaluation each epoch; checkpoints that resume exactly (mid-epoch
too); CSV/TensorBoard logs; progress; SIGTERM/SIGINT and non-finite losses handled without
losing what was saved. The run's config is first bound to its method (only the sections it reads
are kept and stored), and the exported model is the last epoch's or, with ``train.keep_model=best``,
the best epoch's by val top-1.
"""

from __future__ import annotations

import math
import signal
import threading
import time
from pathlib import Path

import torch
import yaml

import finegrain
from finegrain import methods
from finegrain.data.loaders import build_datasets, make_loader
from finegrain.engine import checkpoint as ckpt
from finegrain.engine.budget import ScheduleCost, TimeBudget
from finegrain.engine.cpu_memory import keep_freed_memory
from finegrain.engine.evaluate import evaluate
from finegrain.engine.logging import Progress, RunLogger, echo
from finegrain.engine.optim import resize_schedule
from finegrain.errors import CheckpointError, ConfigError, FinegrainError, TrainingError


#: in the checkpoints folder: the classifier of the best epoch by val top-1 (``train.keep_model=best``)
BEST_MODEL = "best-model.safetensors"


class Interrupted(FinegrainError):
    """Training stopped by a signal after writing a checkpoint."""


def make_fabric(train_cfg):
    from lightning.fabric import Fabric
    from lightning.fabric.strategies import DDPStrategy

    strategy = train_cfg.strategy
    if strategy in ("ddp", "ddp_spawn"):
        # Data-free phases touch different networks, so some parameters get no gradient in a step.
        strategy = DDPStrategy(start_method="spawn" if strategy == "ddp_spawn" else "popen",
                               find_unused_parameters=True)
    devices = int(train_cfg.devices) if str(train_cfg.devices).isdigit() else train_cfg.devices
    try:
        return Fabric(accelerator=train_cfg.accelerator, devices=devices, num_nodes=train_cfg.num_nodes,
                      strategy=strategy, precision=train_cfg.precision)
    except (ValueError, RuntimeError) as err:  # Fabric's word for an impossible device/strategy setting
        raise ConfigError(f"train.accelerator/devices/num_nodes/strategy/precision: {str(err).splitlines()[0]}") from None


class StopFlag:
    """Turns SIGTERM/SIGINT into a flag the loop checks after each iteration."""

    def __init__(self):
        self.signal_name = None
        self._previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        self.signal_name = signal.Signals(signum).name

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def fit(cfg, *, resume: str | None = None) -> dict:
    """Train ``cfg.method.name`` as configured; returns the run summary."""
    return Trainer(cfg, resume=resume).fit()


class Trainer:
    def __init__(self, cfg, *, resume: str | None = None):
        self.cfg = cfg
        self.resume = resume
        self.info = methods.get(cfg.method.name)
        methods.bind_config(cfg)  # before anything is built: a foreign override fails at once
        self.fabric = make_fabric(cfg.train)
        self.last_checkpoint: Path | None = None
        self.global_step = 0

    # ------------------------------------------------------------------------------ set-up
    def _build_data(self):
        cfg, cls = self.cfg, self.info.cls
        if cls.needs_train_data:
            return build_datasets(cfg.data, cfg.train.seed)
        if cfg.data.root is None:
            return None
        return build_datasets(cfg.data, cfg.train.seed, need_train=False)

    def _check_val_for_keep_model(self, data) -> None:
        """``keep_model=best`` chooses by val; without a val split it would have nothing (and test is never used)."""
        if self.cfg.train.keep_model == "best" and (data is None or data.val is None):
            d = self.cfg.data
            raise ConfigError(f"train.keep_model=best needs a validation split: {d.root} has no {d.val_split!r} "
                              f"split and data.val_fraction is {d.val_fraction} (test is never used to choose)")

    def _class_names(self, data) -> list[str]:
        if self.info.cls.needs_train_data:
            return data.class_names
        names = self.info.cls.class_names_from_config(self.cfg)
        if data is not None and list(data.class_names) != list(names):
            raise ConfigError(f"{self.cfg.data.root}: evaluation classes do not match the teacher's "
                              f"({len(data.class_names)} vs {len(names)} classes, or another order)")
        return names

    def _run_dir(self, method) -> Path:
        name = self.cfg.train.run_name or f"{self.cfg.method.name}-{method.eval_model().arch}"
        return Path(self.cfg.train.out_dir) / name

    def _loader(self, dataset, train: bool):
        data_cfg = self.cfg.data
        return make_loader(dataset, data_cfg.batch_size if train else data_cfg.eval_batch_size, train=train,
                           num_workers=data_cfg.num_workers, seed=self.cfg.train.seed,
                           num_replicas=self.fabric.world_size, rank=self.fabric.global_rank,
                           pin_memory=self.fabric.device.type == "cuda")

    # ------------------------------------------------------------------------------- fit
    def fit(self) -> dict:
        cfg, fabric = self.cfg, self.fabric
        self.fit_started = fit_started = time.perf_counter()
        self.deadline = fit_started + 60.0 * cfg.train.max_minutes if cfg.train.max_minutes else None
        self.budget = TimeBudget(cfg.train.budget_minutes, fit_started) if cfg.train.budget_minutes else None
        try:
            fabric.launch()
        except ValueError as err:  # e.g. devices x num_nodes differs from the world torchrun/SLURM started
            raise ConfigError(f"train.devices/num_nodes: {str(err).splitlines()[0]}") from None
        self.main = fabric.global_rank == 0
        if cfg.train.keep_freed_memory and fabric.device.type == "cpu":
            keep_freed_memory()
        # Different seed per rank: data-free noise must differ; DDP broadcasts rank 0's weights.
        fabric.seed_everything(cfg.train.seed + fabric.global_rank, verbose=False)
        self.info.cls.prepare_config(cfg)

        data = self._build_data()
        self._check_val_for_keep_model(data)
        class_names = self._class_names(data)
        num_train = len(data.train) if data is not None and data.train is not None else 0
        method = methods.create(cfg.method.name, cfg, class_names, num_train=num_train, world_size=fabric.world_size)
        self.method = method
        run_dir = self._run_dir(method)
        self.run_dir, self.ckpt_dir = run_dir, run_dir / "checkpoints"
        self.best_path = self.ckpt_dir / BEST_MODEL

        train_loader = self._loader(data.train, True) if num_train else None
        if self.info.cls.needs_train_data and (train_loader is None or len(train_loader) == 0):
            raise ConfigError(f"{cfg.data.root}: training split too small for batch size {cfg.data.batch_size}")
        iterations = len(train_loader) if train_loader else cfg.train.iterations_per_epoch
        if cfg.train.iterations_per_epoch and train_loader:
            iterations = min(iterations, cfg.train.iterations_per_epoch)
        if iterations <= 0:
            raise ConfigError("train.iterations_per_epoch must be > 0 for a method without training data")
        self.iterations = iterations
        total = iterations * cfg.train.epochs
        # the schedule's length: train.epochs full epochs, until a time budget sizes it (the last epoch may be partial)
        self.total_steps, self.epochs, self.schedule_sized = total, cfg.train.epochs, None

        if cfg.train.sync_batchnorm and fabric.world_size > 1:
            if fabric.device.type == "cpu":
                raise ConfigError("train.sync_batchnorm=true needs GPUs: torch's SyncBatchNorm does not run on CPU")
            method = torch.nn.SyncBatchNorm.convert_sync_batchnorm(method)
            self.method = method
        phases = method.configure_phases(total, iterations)
        if cfg.model.channels_last:
            method.to(memory_format=torch.channels_last)
        if cfg.train.compile:
            method.eval_model().compile()
        model, *optimizers = fabric.setup(method, *[p.optimizer for p in phases])
        for phase, optimizer in zip(phases, optimizers):
            phase.optimizer = optimizer
        self.model, self.phases = model, phases

        position = self._restore(method, phases, class_names)
        schedule = position.get("schedule") or {}
        if schedule.get("sized"):  # the length a budget gave the run it continues (else train.epochs rules)
            self.total_steps, self.epochs, self.schedule_sized = (schedule[k] for k in ("total_steps", "epochs", "sized"))
            self.budget = None  # continued as saved: a new estimate would make --resume inexact
        elif position["global_step"]:  # a saved length yields to the config's: a run may resume with more epochs
            for phase in phases:
                if phase.scheduler is not None:
                    resize_schedule(phase.scheduler, self.total_steps)
        if self.main:
            if not position["global_step"]:  # a fresh run keeps no best model of an earlier one
                self.best_path.unlink(missing_ok=True)
            run_dir.mkdir(parents=True, exist_ok=True)
            (run_dir / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
        fabric.barrier()
        logger = RunLogger(run_dir, enabled=self.main)
        if position["global_step"]:
            if logger.csv is not None:
                logger.csv.truncate_after(position["global_step"])
        val_loader = self._loader(data.val, False) if data is not None and data.val is not None else None
        test_loader = self._loader(data.test, False) if data is not None and data.test is not None else None

        echo(f"run {run_dir} | method {cfg.method.name} | {method.eval_model().arch} | "
             f"{len(class_names)} classes | {num_train} train images | {fabric.world_size} process(es) on {fabric.device}",
             self.main)
        started = time.time()
        self.stopped_early = False
        with StopFlag() as stop:
            history = self._epochs(model, phases, data, train_loader, val_loader, test_loader, logger, position, stop)
        if history is None:
            logger.close()
            return {"run_dir": str(run_dir), "paused_at_step": self.global_step, "checkpoint": str(self.last_checkpoint)}
        summary = self._finish(method, test_loader, history, logger, started)
        logger.close()
        return summary

    def _epochs(self, model, phases, data, train_loader, val_loader, test_loader, logger, position, stop) -> dict:
        cfg, fabric, method = self.cfg, self.fabric, self.method
        history = position["history"]
        start_iteration = position["iteration"]
        self.global_step = position["global_step"]
        epoch = position["epoch"]
        while epoch < self.epochs:  # a while: the time budget may change self.epochs during the run
            method.on_epoch_start(epoch)
            if self.budget is not None:
                self.budget.epoch_started()
            model.train()
            batches = None
            if train_loader is not None:
                data.train.set_epoch(epoch)
                train_loader.sampler.set_epoch(epoch, start=start_iteration * cfg.data.batch_size)
                batches = iter(train_loader)
            progress = Progress(self._epoch_length(epoch) - start_iteration, f"epoch {epoch + 1}/{self.epochs}",
                                enabled=self.main, every=cfg.train.log_every)
            sums, count, images, tic = {}, 0, 0, time.perf_counter()
            iteration = start_iteration
            while iteration < self._epoch_length(epoch):
                batch = fabric.to_device(next(batches)) if batches is not None else None
                logs = self._iteration(model, phases, batch)
                self.global_step += 1
                count += 1
                images += len(batch[1]) * fabric.world_size if batch is not None else 0
                for key, value in logs.items():
                    sums[key] = sums.get(key, 0.0) + value
                if cfg.train.log_every and self.global_step % cfg.train.log_every == 0:
                    logger.log({f"train/{k}": float(v) for k, v in self._mean_over_ranks(logs).items()}, self.global_step, epoch)
                progress.advance(f"loss {float(logs.get(self._log_key(phases[-1], 'loss'), float('nan'))):.4f}")
                if self.budget is not None:
                    self.budget.iteration_ended()
                    if self.schedule_sized is None and self._any_rank(self.budget.ready()):
                        self._size_schedule(epoch, val_loader, test_loader, measured_val_seconds=None)
                every = cfg.train.checkpoint_every_steps
                if every and self.global_step % every == 0 and iteration + 1 < self._epoch_length(epoch):
                    self._save(epoch, iteration + 1, history)
                if self._any_rank(stop.signal_name is not None):
                    path = self._save(epoch, iteration + 1, history)
                    progress.close()
                    raise Interrupted(f"stopped by {stop.signal_name or 'a signal to another process'} at step {self.global_step}; checkpoint written: {path}")
                if cfg.train.stop_after_steps and self.global_step >= cfg.train.stop_after_steps:
                    self._save(epoch, iteration + 1, history)
                    progress.close()
                    echo(f"paused at step {self.global_step} (train.stop_after_steps); continue with --resume auto", self.main)
                    return None
                if self._out_of_time(epoch, iteration):
                    # saved before the partial epoch's evaluation: --resume continues as if never stopped
                    self._save(epoch, iteration + 1, history)
                    self.stopped_early = True
                    break
                iteration += 1
            progress.close()
            start_iteration = 0
            elapsed = time.perf_counter() - tic
            record = {f"train/{k}_mean": float(v) / max(1, count) for k, v in self._mean_over_ranks(sums).items()}
            record["train/images_per_s"] = images / elapsed if images else 0.0
            record["train/iterations_per_s"] = count / elapsed
            record["lr"] = phases[-1].optimizer.param_groups[-1]["lr"]
            method_record, warnings = method.epoch_report(elapsed)
            record.update(method_record)
            for warning in warnings:
                echo(f"warning: {warning}", self.main)
            last = epoch + 1 == self.epochs or self.stopped_early
            if val_loader is not None and (last or (cfg.train.eval_every and (epoch + 1) % cfg.train.eval_every == 0)):
                val_started = time.perf_counter()
                result = evaluate(method.eval_model(), val_loader, method.num_classes, fabric=fabric)
                if self.budget is not None and self.budget.gaps and not last:  # a val pass measured
                    self._size_schedule(epoch + 1, val_loader, test_loader,
                                        measured_val_seconds=time.perf_counter() - val_started)
                record.update({"val/top1": result["top1"], "val/top5": result["top5"], "val/loss": result["loss"],
                               "val/mean_class_acc": result["mean_class_acc"]})
                self._keep_if_best(history, result["top1"])
            logger.log(record, self.global_step, epoch)
            history.append({"epoch": epoch + 1, **record})
            echo(f"epoch {epoch + 1}: " + ", ".join(f"{k}={v:.4g}" for k, v in record.items()), self.main)
            if self.stopped_early:
                echo(f"stopped at step {self.global_step} of {self.total_steps}: "
                     f"train.max_minutes={cfg.train.max_minutes:g} reached; --resume auto continues the schedule", self.main)
                return history
            self._save(epoch + 1, 0, history)
            epoch += 1
        return history

    def _epoch_length(self, epoch: int) -> int:
        """Iterations of 0-based ``epoch``: all but the last of a budget-sized schedule are full."""
        return max(0, min(self.iterations, self.total_steps - epoch * self.iterations))

    def _size_schedule(self, epoch: int, val_loader, test_loader, measured_val_seconds: float | None) -> None:
        """``train.budget_minutes``: give the schedule the most iterations that fit the budget.

        Sized first from the timed iterations and an evaluation cost estimated on two batches
        (``schedule_sized = "estimate"``), then at each epoch's end from that epoch's step times and
        its measured val pass (``"measured"``), before the epoch's checkpoint, which keeps the length;
        a resumed run continues the length its checkpoint holds and never sizes again."""
        if measured_val_seconds is None:
            val_s, test_s = self._estimate_eval_seconds(val_loader), self._estimate_eval_seconds(test_loader)
        else:
            val_s = measured_val_seconds
            test_s = val_s * len(test_loader) / max(1, len(val_loader)) if test_loader is not None else 0.0
        cost = ScheduleCost(self.budget.seconds_per_iteration(), val_s, test_s, self.iterations,
                            self.cfg.train.eval_every)
        total = self.fabric.broadcast(self.budget.size(cost, self.global_step, epoch), src=0)
        self.total_steps = total
        self.epochs = math.ceil(total / self.iterations)  # total >= global_step >= 1: the current epoch counts
        for phase in self.phases:
            if phase.scheduler is not None:
                resize_schedule(phase.scheduler, total)
        final = measured_val_seconds is not None or val_loader is None
        self.schedule_sized = "measured" if final else "estimate"
        echo(f"budget {self.cfg.train.budget_minutes:g} min: {total} iterations ({self.epochs} epochs), "
             f"{cost.seconds_per_iteration:.2f} s per iteration, val {val_s:.1f} s, test {test_s:.1f} s"
             f"{'' if final else ' (estimated; sized again after each val pass)'}", self.main)

    def _estimate_eval_seconds(self, loader, batches: int = 2) -> float:
        """One evaluation pass over ``loader``, extrapolated from timing its first ``batches``."""
        if loader is None:
            return 0.0
        model = self.method.eval_model()
        was_training, done, tic = model.training, 0, time.perf_counter()
        model.eval()
        with torch.no_grad():
            for images, _ in loader:
                model(self.fabric.to_device(images))
                done += 1
                if done == batches:
                    break
        model.train(was_training)
        return (time.perf_counter() - tic) / max(1, done) * len(loader)

    def _out_of_time(self, epoch: int, iteration: int) -> bool:
        """``train.max_minutes`` has passed and steps remain (checked after each iteration, on every rank).

        Why a wall-clock limit besides step counts: the same steps take a third longer on a busy
        day, and a demo or a benchmark promises minutes, not steps."""
        if self.deadline is None or self.global_step >= self.total_steps:
            return False
        return self._any_rank(time.perf_counter() >= self.deadline)

    def _keep_if_best(self, history: list, top1: float) -> None:
        """``keep_model=best``: save the classifier when val top-1 beats every earlier epoch's (a tie keeps
        the earlier)."""
        if self.cfg.train.keep_model != "best":
            return
        earlier = [h["val/top1"] for h in history if "val/top1" in h]
        if self.main and (not earlier or top1 > max(earlier)):
            self.ckpt_dir.mkdir(parents=True, exist_ok=True)
            ckpt.save_tensors(self.best_path, self.method.eval_model().state_dict())
        self.fabric.barrier()

    def _iteration(self, model, phases, batch) -> dict:
        cfg, fabric = self.cfg, self.fabric
        logs = {}
        for phase in phases:
            warmup = phase.warmup_steps if self.global_step == 0 else 0  # a fresh run's first iteration only
            for _ in range(warmup + phase.steps):
                out = model(phase.name, batch if phase.uses_batch else None)
                loss = out["loss"]
                if self._any_rank(not bool(torch.isfinite(loss).all())):
                    if cfg.train.nan_policy == "stop":
                        last = self.last_checkpoint or "none written yet"
                        raise TrainingError(f"non-finite loss ({float(loss.detach())}) in phase {phase.name!r} at step "
                                            f"{self.global_step + 1}; last good checkpoint: {last}")
                    phase.optimizer.zero_grad(set_to_none=True)
                    logs[self._log_key(phase, "skipped")] = torch.tensor(1.0)
                    continue
                phase.optimizer.zero_grad(set_to_none=True)
                fabric.backward(loss)
                if cfg.train.grad_clip:
                    fabric.clip_gradients(model, phase.optimizer, max_norm=cfg.train.grad_clip)
                phase.optimizer.step()
                self.method.on_optimizer_step(phase.name)
                for key, value in out.items():
                    logs[self._log_key(phase, key)] = value.detach().float().mean().cpu()
            if phase.scheduler is not None:
                phase.scheduler.step()
        return logs

    def _any_rank(self, flag: bool) -> bool:
        """True on every rank when ``flag`` is true on any: ranks must take the same branch (skip a
        step, stop on a signal) or the next collective deadlocks."""
        if self.fabric.world_size == 1:
            return flag
        return bool(self.fabric.all_reduce(torch.tensor(float(flag), device=self.fabric.device), reduce_op="sum") > 0)

    def _mean_over_ranks(self, values: dict) -> dict:
        """Logged losses describe the global batch, not rank 0's share of it."""
        if self.fabric.world_size == 1 or not values:
            return values
        keys = sorted(values)
        stacked = torch.stack([torch.as_tensor(values[k], dtype=torch.float32) for k in keys]).to(self.fabric.device)
        return dict(zip(keys, self.fabric.all_reduce(stacked, reduce_op="mean").cpu()))

    def _log_key(self, phase, key: str) -> str:
        """``loss`` for a one-phase method, ``student/loss`` where phases must be told apart."""
        return key if len(self.phases) == 1 else f"{phase.name}/{key}"

    # ----------------------------------------------------------------------- checkpoints
    def _meta(self, epoch: int, iteration: int, history: list) -> dict:
        cfg, method = self.cfg, self.method
        classifier = method.eval_model()
        return {
            "finegrain_version": finegrain.__version__,
            "method": cfg.method.name,
            "architecture": classifier.arch,
            "num_classes": method.num_classes,
            "class_names": method.class_names,
            "classifier_prefix": f"{method.classifier_attr}.",
            "image_size": cfg.data.image_size,
            "crop_ratio": cfg.data.crop_ratio,
            "mean": list(cfg.data.mean),
            "std": list(cfg.data.std),
            "config": cfg.to_dict(),
            "epoch": epoch,
            "iteration": iteration,
            "global_step": self.global_step,
            "schedule": {"total_steps": self.total_steps, "epochs": self.epochs, "sized": self.schedule_sized},
            "metrics": history[-1] if history else {},
        }

    def _save(self, epoch: int, iteration: int, history: list) -> Path | None:
        """Rank 0 writes; every rank waits so that no one runs ahead of a checkpoint."""
        path = None
        if self.main:
            state = {
                "optimizers": {p.name: p.optimizer.state_dict() for p in self.phases},
                "schedulers": {p.name: p.scheduler.state_dict() for p in self.phases if p.scheduler is not None},
                "rng": ckpt.rng_state(),
                "history": history,
            }
            stem = f"ckpt-e{epoch:03d}-s{self.global_step:08d}"
            path = ckpt.save_checkpoint(self.ckpt_dir, stem, self.method.checkpoint_state(), state,
                                        self._meta(epoch, iteration, history))
            ckpt.prune(self.ckpt_dir, self.cfg.train.keep_last, protect={path.name})
            self.last_checkpoint = path
        self.fabric.barrier()
        return path

    def _restore(self, method, phases, class_names) -> dict:
        fresh = {"epoch": 0, "iteration": 0, "global_step": 0, "history": []}
        if not self.resume:
            if ckpt.list_checkpoints(self.ckpt_dir):
                raise ConfigError(f"{self.run_dir} already holds checkpoints; pass --resume auto to continue it, "
                                  f"or set train.run_name to start another run")
            return fresh
        if self.resume == "auto":
            sidecar, problems = ckpt.newest_valid(self.ckpt_dir)
            for problem in problems:
                echo(f"warning: passed over {problem}", self.main)
            if sidecar is None:
                echo(f"no checkpoint to resume in {self.ckpt_dir}; starting fresh", self.main)
                return fresh
        else:
            sidecar = Path(self.resume)
        meta, tensors, state = ckpt.load_checkpoint(sidecar)
        ckpt.check_compatible(meta, method.eval_model().arch, class_names)
        if meta.get("method") != self.cfg.method.name:
            raise CheckpointError(f"{meta['_path']}: written by method {meta.get('method')!r}, not {self.cfg.method.name!r}")
        method.load_checkpoint_state(tensors)
        for phase in phases:
            if phase.name not in state["optimizers"]:
                raise CheckpointError(f"{meta['_path']}: no optimizer state for phase {phase.name!r}")
            phase.optimizer.load_state_dict(state["optimizers"][phase.name])
            if phase.scheduler is not None and phase.name in state["schedulers"]:
                phase.scheduler.load_state_dict(state["schedulers"][phase.name])
        ckpt.set_rng_state(state["rng"])
        self.last_checkpoint = Path(meta["_path"])
        echo(f"resumed from {meta['_path']} (epoch {meta['epoch']}, step {meta['global_step']})", self.main)
        return {"epoch": meta["epoch"], "iteration": meta["iteration"], "global_step": meta["global_step"],
                "history": list(state.get("history", [])), "schedule": meta.get("schedule")}

    # ---------------------------------------------------------------------------- finish
    def _finish(self, method, test_loader, history, logger, started) -> dict:
        summary = {
            "run_dir": str(self.run_dir),
            "method": self.cfg.method.name,
            **method.eval_model().describe(),
            "epochs": self.epochs,
            "train_seconds": round(time.time() - started, 1),
            "stopped_early": self.stopped_early,
            "budget_minutes": self.cfg.train.budget_minutes,
            "scheduled_steps": self.total_steps,
            "steps": self.global_step,
            "history": history,
            "checkpoint": str(self.last_checkpoint) if self.last_checkpoint else None,
            "rank": self.fabric.global_rank,
        }
        if history:
            summary["images_per_s"] = history[-1].get("train/images_per_s")
            vals = [h["val/top1"] for h in history if "val/top1" in h]
            if vals:
                summary["val_top1"] = vals[-1]
                summary["best_val_top1"] = max(vals)
        summary["kept_epoch"] = self._load_kept_model(method, history)
        if test_loader is not None:
            result = evaluate(method.eval_model(), test_loader, method.num_classes, fabric=self.fabric)
            summary.update(test_top1=result["top1"], test_top5=result["top5"],
                           test_mean_class_acc=result["mean_class_acc"])
            logger.log({"test/top1": result["top1"], "test/top5": result["top5"]}, self.global_step, self.epochs)
            if self.main:
                ckpt.write_json(self.run_dir / "eval_test.json", {"class_names": method.class_names, **result})
        summary["seconds"] = round(time.perf_counter() - self.fit_started, 1)  # the whole fit: what a budget bounds
        if self.main:
            self._export_classifier(method, summary["kept_epoch"])
            ckpt.write_json(self.run_dir / "summary.json", summary)
        self.fabric.barrier()
        return summary

    def _load_kept_model(self, method, history: list) -> int:
        """The epoch whose classifier is exported (and tested): the last, or the best kept by val."""
        last = history[-1]["epoch"] if history else self.epochs  # earlier when train.max_minutes stopped it
        if self.cfg.train.keep_model != "best":
            return last
        scored = [(h["val/top1"], -h["epoch"]) for h in history if "val/top1" in h]
        if not scored or not self.best_path.is_file():
            echo("warning: train.keep_model=best but no best epoch was saved; exporting the last", self.main)
            return last
        method.eval_model().load_state_dict(ckpt.load_tensors(self.best_path))
        best_epoch = -max(scored)[1]
        echo(f"keeping epoch {best_epoch} of {last} (best val top-1 {max(scored)[0]:.4g})", self.main)
        return best_epoch

    def _export_classifier(self, method, epoch: int) -> None:
        """The deployable model alone: ``model.safetensors`` + ``model.json`` in the run folder."""
        meta = self._meta(epoch, 0, [])
        meta["classifier_prefix"] = ""
        meta["environment"] = ckpt.environment_facts()  # what `finegrain env` prints, as every sidecar
        meta["keep_model"] = self.cfg.train.keep_model
        tensors = method.eval_model().state_dict()
        ckpt.save_tensors(self.run_dir / "model.safetensors", tensors)
        meta["files"] = {"tensors": "model.safetensors"}
        meta["sizes"] = {"tensors": (self.run_dir / "model.safetensors").stat().st_size}
        ckpt.write_json(self.run_dir / "model.json", meta)
