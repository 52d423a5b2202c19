//go:build !unix

package platform

const oNoFollow = 0
