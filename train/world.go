package train

import (
	"sync"

	"github.com/lilygo/lily/mpi"
)

// world is the process's MPI world, started by the first World call.
var world struct {
	sync.Mutex
	w   *mpi.World
	err error
}

// World returns the MPI world of this process, starting it on the first
// call: under mpirun (a build with the mpi tag) the job's processes, else
// one process. A command that trains passes it as Config.Comm; Main ends it
// when the command returns (Finalize, or Abort on an error in a job of
// several processes, so that no rank waits for ever).
func World() (*mpi.World, error) {
	world.Lock()
	defer world.Unlock()
	if world.w == nil && world.err == nil {
		world.w, world.err = mpi.Init()
	}
	return world.w, world.err
}

// endWorld finalizes the world if a command started it; with an error in a
// job of several processes it aborts the job instead, which does not
// return.
func endWorld(cmdErr error) error {
	world.Lock()
	w := world.w
	world.Unlock()
	if w == nil {
		return nil
	}
	if cmdErr != nil && w.Size() > 1 {
		w.Abort(1, cmdErr)
	}
	return w.Finalize()
}
