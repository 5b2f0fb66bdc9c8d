export class Counter {
  add() {}
}

export class Trend {
  add() {}
}
