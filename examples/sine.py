"""Sine-wave prediction with nnlstm, end to end.

Trains an LSTM regressor with variational recurrent dropout to predict the next value of a
noisy sine wave from the last ``--window`` values, validates without building gradients (no
dropout), saves the parameters (.h5), exports an inference .nnp (no dropout, variable batch
size), reloads that .nnp with NNabla's own NnpLoader (no nnlstm involved), predicts the
future closed-loop (feeding predictions back) and writes a plot of truth vs prediction. The
plot also shows a band of mean +- 2 standard deviations over ``--mc-samples`` closed-loop runs
with dropout on (nnlstm.mc_dropout), and the job prints how much of the truth falls inside.
With the onnx extra installed it also writes sine.onnx (symbolic batch size) and checks it in
ONNX Runtime against the NNabla graph.

    ./run sine                      # about two minutes on 2 CPU cores
    ./run sine -i 300 -o out/quick  # a quick look
"""
import argparse
import importlib.util
import os
import time

import numpy as np
import nnabla as nn
import nnabla.functions as F
import nnabla.parametric_functions as PF
import nnabla.solvers as S
from nnabla.monitor import Monitor, MonitorSeries, MonitorTimeElapsed
from nnabla.utils.nnp_graph import NnpLoader

import nnlstm
from nnlstm.unroll import ensure_stack


def get_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--context', '-c', default='cpu', choices=nnlstm.CONTEXTS,
                   help="'cpu', or 'cudnn' with nnabla-ext-cuda120")
    p.add_argument('--device-id', '-d', default='0')
    p.add_argument('--type-config', '-t', default='float')
    p.add_argument('--batch-size', '-b', type=int, default=32)
    p.add_argument('--max-iter', '-i', type=int, default=6000)
    p.add_argument('--val-interval', type=int, default=250)
    p.add_argument('--learning-rate', type=float, default=3e-3)
    p.add_argument('--window', type=int, default=32, help='time steps T fed to the LSTM')
    p.add_argument('--units', type=int, default=32)
    p.add_argument('--recurrent-dropout', type=float, default=0.03,
                   help='variational dropout rate of the LSTM state while training')
    p.add_argument('--mc-samples', type=int, default=100,
                   help='closed-loop runs with dropout on, for the band')
    p.add_argument('--period', type=float, default=25.0, help='sine period in steps')
    p.add_argument('--noise', type=float, default=0.05)
    p.add_argument('--predict-steps', type=int, default=100,
                   help='closed-loop prediction horizon')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--model-save-path', '-o', default='out/sine')
    p.add_argument('--monitor-path', '-m', default=None,
                   help='defaults to --model-save-path')
    args = p.parse_args()
    args.monitor_path = args.monitor_path or args.model_save_path
    return args


def sine_series(length, period, noise, rng):
    """Two sines (``period`` and 2.45 x ``period`` steps) plus Gaussian noise."""
    t = np.arange(length)
    clean = np.sin(2 * np.pi * t / period) + 0.5 * np.sin(2 * np.pi * t / (2.45 * period))
    return (clean + noise * rng.randn(length)).astype(np.float32)


def windows(series, window):
    """All (window -> next value) pairs: x (N, window, 1), t (N, 1)."""
    idx = np.arange(len(series) - window)[:, None] + np.arange(window)
    return series[idx][..., None], series[window:][:, None]


def model(x, units, recurrent_dropout=0.0):
    """x (B, T, 1) -> next value (B, 1). Same names, same parameters in every graph; the
    recurrent dropout masks are built in training graphs and inside nnlstm.mc_dropout only.
    (No input dropout: with one input feature it would blank whole windows.)"""
    h = nnlstm.LSTM(x, units, recurrent_dropout=recurrent_dropout, name='lstm')
    return PF.affine(h, 1, name='fc')


def onnx_extra_installed():
    """onnxruntime and NNabla's ONNX converter are there (the onnx extra)."""
    return all(importlib.util.find_spec(m) is not None
               for m in ('onnx', 'onnxruntime', 'nnabla.utils.converter.onnx'))


def onnx_max_difference(onnx_path, inputs, want):
    """Run ``onnx_path`` in ONNX Runtime on ``inputs``; max |difference| from ``want``."""
    import onnxruntime
    session = onnxruntime.InferenceSession(onnx_path, providers=['CPUExecutionProvider'])
    got = session.run(['y'], {'x': inputs.astype(np.float32)})[0]
    return float(np.abs(got - want).max())


def closed_loop(forward, start, steps):
    """Predict ``steps`` values after each row of ``start`` (B, T, 1), feeding each
    prediction back as the newest input."""
    window = start.copy()
    preds = []
    for _ in range(steps):
        y = forward(window)                                       # (B, 1)
        preds.append(y[:, 0])
        window = np.concatenate([window[:, 1:], y[:, None, :]], axis=1)
    return np.stack(preds, axis=1)                                # (B, steps)


def rollout(forward, window, steps):
    """The closed loop as one graph: ``steps`` predictions (B, steps) after each row of the
    Variable ``window`` (B, T, 1), each fed back as the newest input. Under mc_dropout every
    row is one sampled trajectory (each prediction step draws its own masks)."""
    rows, width, _ = window.shape
    ensure_stack(steps * width)  # the graph is steps x T cells deep
    preds = []
    for _ in range(steps):
        y = forward(window)                                       # (B, 1)
        preds.append(y)
        window = F.concatenate(F.slice(window, (0, 1, 0), (rows, width, 1)),
                               F.reshape(y, (rows, 1, 1)), axis=1)
    return F.concatenate(*preds, axis=1)                          # (B, steps)


def mc_band(args, history):
    """Mean and standard deviation (B, steps) of ``args.mc_samples`` closed-loop trajectories
    after each row of ``history`` (B, T, 1), with the recurrent dropout on."""
    mean, variance = nnlstm.mc_dropout(
        lambda w: rollout(lambda v: model(v, args.units, args.recurrent_dropout), w,
                          args.predict_steps),
        nn.Variable.from_numpy_array(history), samples=args.mc_samples)
    variance.forward(clear_buffer=True)
    return mean.d.copy(), np.sqrt(variance.d)


def plot(path, history, truth, pred, mse, band):
    """Truth, the .nnp's prediction and the MC dropout band for each window, and below them
    the band's half-width against the error of its mean, per step (mean over windows)."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    mean, sd, inside = band
    rows = len(truth)
    fig, axes = plt.subplots(rows + 1, 1, figsize=(9, 2.2 * (rows + 1)), squeeze=False)
    t_hist = np.arange(-history.shape[1], 0)
    t_future = np.arange(truth.shape[1])
    for k, ax in enumerate(axes[:rows, 0]):
        ax.plot(t_hist, history[k, :, 0], color='gray', label='input window')
        ax.plot(t_future, truth[k], color='black', label='truth')
        ax.fill_between(t_future, mean[k] - 2 * sd[k], mean[k] + 2 * sd[k], color='tab:blue',
                        alpha=0.45, linewidth=0, label='MC dropout mean $\\pm$ 2 sd')
        ax.plot(t_future, mean[k], color='tab:blue', linewidth=1, label='MC dropout mean')
        ax.plot(t_future, pred[k], '--', color='tab:red', label='prediction of the .nnp')
        ax.set_ylabel('x')
    axes[0, 0].legend(loc='lower center', bbox_to_anchor=(0.5, 1.0), ncol=5, fontsize=7,
                      frameon=False)
    ax = axes[rows, 0]
    ax.plot(t_future, (2 * sd).mean(axis=0), color='tab:blue', label='2 sd (band half-width)')
    ax.plot(t_future, np.abs(truth - mean).mean(axis=0), color='black',
            label='|truth - MC mean|')
    ax.set_ylabel('mean over windows')
    ax.legend(loc='upper left', fontsize=7)
    ax.set_xlabel('steps after the window')
    fig.suptitle('nnlstm closed-loop sine prediction: .nnp MSE %.4f; truth inside the MC '
                 'dropout band at %.0f %% of the points' % (mse, 100 * inside), fontsize=10)
    fig.tight_layout()
    tmp = path + '.tmp.png'
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    os.replace(tmp, path)


def main():
    args = get_args()
    try:
        nn.set_default_context(nnlstm.context(args.context, args.device_id, args.type_config))
    except ImportError as e:  # cudnn without nnabla-ext-cuda120: say what to install
        raise SystemExit('%s: %s' % (__file__, e))
    os.makedirs(args.model_save_path, exist_ok=True)
    rng = np.random.RandomState(args.seed)
    nn.random.seed(args.seed)

    series = sine_series(4000, args.period, args.noise, rng)
    split = int(len(series) * 0.8)
    train_x, train_t = windows(series[:split], args.window)
    val_x, val_t = windows(series[split:], args.window)

    # Training graph (batch-size B) and validation graph (the whole validation set, no
    # gradients built) share the parameters through the layers' names.
    x = nn.Variable((args.batch_size, args.window, 1))
    t = nn.Variable((args.batch_size, 1))
    loss = F.mean(F.squared_error(model(x, args.units, args.recurrent_dropout), t))
    with nn.no_grad():
        vx, vt = nn.Variable.from_numpy_array(val_x), nn.Variable.from_numpy_array(val_t)
        vy = model(vx, args.units, args.recurrent_dropout)
        vloss = F.mean(F.squared_error(vy, vt))

    solver = S.Adam(args.learning_rate)
    solver.set_parameters(nn.get_parameters())
    monitor = Monitor(args.monitor_path)
    m_loss = MonitorSeries('training loss', monitor, interval=args.val_interval)
    m_val = MonitorSeries('validation mse', monitor, interval=1)
    m_time = MonitorTimeElapsed('training time', monitor, interval=args.val_interval)

    start = time.time()
    for i in range(1, args.max_iter + 1):
        idx = rng.randint(0, len(train_x), args.batch_size)
        x.d, t.d = train_x[idx], train_t[idx]
        # Cosine decay to 1% of the initial rate.
        progress = (i - 1) / args.max_iter
        solver.set_learning_rate(args.learning_rate * (0.01 + 0.99 * 0.5 * (1 + np.cos(np.pi * progress))))
        loss.forward(clear_no_need_grad=True)
        solver.zero_grad()
        loss.backward(clear_buffer=True)
        solver.update()
        m_loss.add(i, loss.d.copy())
        m_time.add(i)
        if i % args.val_interval == 0 or i == args.max_iter:
            vloss.forward(clear_buffer=True)
            m_val.add(i, vloss.d.copy())
    val_mse = float(vloss.d)
    print('trained %d iterations in %.1f s; validation MSE %.5f (noise floor %.5f)'
          % (args.max_iter, time.time() - start, val_mse, args.noise ** 2))

    params_path = os.path.join(args.model_save_path, 'sine_params.h5')
    nnlstm.save_parameters(params_path)
    nnp_path = os.path.join(args.model_save_path, 'sine.nnp')
    with nn.no_grad():
        ex = nn.Variable((1, args.window, 1))
        ey = model(ex, args.units, args.recurrent_dropout)
    with_onnx = onnx_extra_installed()
    files = nnlstm.export_network(nnp_path, {'x': ex}, {'y': ey}, onnx=with_onnx)
    if with_onnx:
        # One .onnx for every batch size: here the whole validation set at once.
        vy.forward(clear_no_need_grad=True)
        diff = onnx_max_difference(files['onnx'], val_x, vy.d)
        print('ONNX Runtime runs %s (opset 13) on the %d validation windows: max |difference| '
              'from the NNabla graph %.2e' % (files['onnx'], len(val_x), diff))
    else:
        print('no sine.onnx: the onnx extra is not installed (NNLSTM_EXTRAS=test,examples,onnx)')
    # An input for `nnabla_cli infer` (see the README): one window, raw float32.
    val_x[:1].astype(np.float32).tofile(os.path.join(args.model_save_path, 'sine_input.bin'))

    # Monte Carlo dropout over the same windows the .nnp predicts from, below.
    starts = np.arange(4) * (len(val_x) - args.predict_steps) // 4
    history = val_x[starts]
    truth = np.stack([val_t[s:s + args.predict_steps, 0] for s in starts])
    began = time.time()
    mean, sd = mc_band(args, history)
    inside = float(np.mean(np.abs(truth - mean) <= 2 * sd))
    print('Monte Carlo dropout, %d closed-loop runs in one graph (%.1f s): the truth lies '
          'inside mean +- 2 sd at %.0f %% of the %d predicted points (mean sd %.3f, MSE of '
          'the mean %.5f)' % (args.mc_samples, time.time() - began, 100 * inside, truth.size,
                              sd.mean(), np.mean((mean - truth) ** 2)))

    # Reload the .nnp with NNabla's own loader, into an empty parameter store, at another
    # batch size than it was exported with, and predict closed-loop.
    nn.clear_parameters()
    net = NnpLoader(nnp_path).get_network('inference', batch_size=len(starts))
    nx, ny = net.inputs['x'], net.outputs['y']

    def forward(window):
        nx.d = window
        ny.forward(clear_buffer=True)
        return ny.d.copy()

    pred = closed_loop(forward, history, args.predict_steps)
    mse = float(np.mean((pred - truth) ** 2))
    png = os.path.join(args.model_save_path, 'sine_prediction.png')
    plot(png, history, truth, pred, mse, (mean, sd, inside))
    print('saved %s, %s and %s' % (params_path, nnp_path, png))
    print('closed-loop prediction from the reloaded .nnp, %d steps x %d windows: MSE %.5f'
          % (args.predict_steps, len(starts), mse))
    return val_mse, mse


if __name__ == '__main__':
    main()
