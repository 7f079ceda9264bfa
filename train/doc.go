// Package train holds what every fine-tuning command of this module shares:
// learning-rate schedules, optimiser parameter groups, a progress bar with
// loss, learning rate and ETA, Ctrl-C handling, atomic JSON results and PNG
// plots.
package train
